"""Slack plugin: OAuth v2 install with token rotation, Block Kit messages, interactivity."""
