"""MQTT and Home Assistant: topics, discovery, client, publisher and its durable spool."""
