FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY activities activities
COPY workflows workflows
COPY worker worker
COPY vault vault
COPY gateway gateway
COPY store store
COPY sandbox sandbox
RUN pip install --no-cache-dir .
USER nobody
CMD ["python", "-m", "worker"]
