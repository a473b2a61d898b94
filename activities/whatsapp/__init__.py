"""WhatsApp Business (Cloud API) plugin."""
