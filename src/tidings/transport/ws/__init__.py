"""Zaqar's v2 WebSocket API, served by the same ASGI app at ``/``.

``actions`` maps each action to the operation its HTTP route calls;
``endpoint`` reads frames, dispatches them and writes the replies.
"""

from tidings.transport.ws.actions import ACTIONS
from tidings.transport.ws.endpoint import Endpoint, use_raw_frames
from tidings.transport.ws.subscription_actions import ACTIONS as SUBSCRIPTION_ACTIONS

ACTIONS.update(SUBSCRIPTION_ACTIONS)

__all__ = ["Endpoint", "use_raw_frames"]
