"""`python -m worker` runs the worker."""

from worker.main import main

main()
