"""The gateway's routes, one router per resource: `models`, `voices`, `speech` (under /v1, behind the
API key) and `health` (health probes and the playground page, open). Each route reaches the Triton
side, the voice library and the settings through `gateway.services`."""
