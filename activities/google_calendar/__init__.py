"""Google Calendar v3 plugin: events, instances, freeBusy; OAuth user and service-account credentials."""
