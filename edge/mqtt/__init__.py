"""MQTT: settings (:mod:`.config`, no paho), paho client (:mod:`.client`), topics, publisher, outbox,
``listen`` and Home Assistant discovery. Importing this package loads nothing."""
