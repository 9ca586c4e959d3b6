"""Home Assistant MQTT discovery: each gate's last decision and mode as sensors, its door
or barrier as a binary sensor, and each reader and camera as a connectivity sensor,
announced under ``homeassistant/…/config`` (retained, again on every connect) with the
node's retained ``status`` as their availability.

A gate's mode is a sensor, not a select: a mode is changed with a reason by a person the
control room knows (``PUT /api/v1/gates/{gate}/mode``), never by an unauthenticated MQTT
command. Pure: the messages from the config.
"""

from __future__ import annotations

from typing import Any

from edge.config import Config


def discovery(cfg: Config, prefix: str) -> list[tuple[str, dict[str, Any]]]:
    """(full topic, payload) of each entity's config message."""
    assert cfg.mqtt is not None
    base = f"{cfg.mqtt.prefix}/{cfg.node_id}/"
    node = f"gatehouse_{cfg.node_id}".replace("-", "_")
    common = {
        "availability_topic": base + "status",
        "payload_available": "online",
        "payload_not_available": "offline",
        "device": {"identifiers": [node], "name": f"Gatehouse {cfg.node_id}",
                   "manufacturer": "Gatehouse", "model": "guard-room node"},
    }  # fmt: skip
    out: list[tuple[str, dict[str, Any]]] = []
    for gate in cfg.gates:
        uid = f"{node}_{gate}".replace("-", "_")
        out.append((f"{prefix}/sensor/{uid}_decision/config", common | {
            "name": f"{gate} last decision", "unique_id": f"{uid}_decision",
            "state_topic": f"{base}gate/{gate}/decision",
            "value_template": "{{ value_json.decision }}",
            "json_attributes_topic": f"{base}gate/{gate}/decision",
            "icon": "mdi:boom-gate",
        }))  # fmt: skip
        out.append((f"{prefix}/sensor/{uid}_mode/config", common | {
            "name": f"{gate} mode", "unique_id": f"{uid}_mode",
            "state_topic": f"{base}gate/{gate}/mode",
            "value_template": "{{ value_json.mode }}",
            "json_attributes_topic": f"{base}gate/{gate}/mode",
        }))  # fmt: skip
        if gate in cfg.doors:
            out.append((f"{prefix}/binary_sensor/{uid}_door/config", common | {
                "name": f"{gate} door", "unique_id": f"{uid}_door", "device_class": "door",
                "state_topic": f"{base}gate/{gate}/contact",
                "value_template": "{{ value_json.state }}",
                "payload_on": "open", "payload_off": "closed",
            }))  # fmt: skip
    # each reader and camera: up or not (edge.health.device_states), with why as attributes
    devices = [("reader", r.id) for r in cfg.readers] + [("camera", c.id) for c in cfg.cameras]
    for kind, device in devices:
        uid = f"{node}_{kind}_{device}".replace("-", "_").replace(".", "_")
        out.append((f"{prefix}/binary_sensor/{uid}/config", common | {
            "name": f"{kind} {device}", "unique_id": uid, "device_class": "connectivity",
            "state_topic": f"{base}{kind}/{device}/state",
            "value_template": "{{ 'ON' if value_json.ok else 'OFF' }}",
            "json_attributes_topic": f"{base}{kind}/{device}/state",
            "entity_category": "diagnostic",
        }))  # fmt: skip
    return out
