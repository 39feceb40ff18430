"""A pipeline stage that rejects messages whose body fails a JSON schema.

A queue opts in by holding a JSON schema in its metadata under
``json_schema``:

    PUT /v2/queues/orders
    {"json_schema": {"type": "object", "required": ["sku", "qty"],
                     "properties": {"qty": {"type": "integer", "minimum": 1}}}}

Every message posted to that queue must then match it; a post with one
message that does not is refused whole with a 400 naming the message and
the reason. Queues without the key are not checked.

Enable it (docs/pipeline.md):

    message_pipeline = ["examples.json_schema_stage:JsonSchemaStage"]

or ``TIDINGS_MESSAGE_PIPELINE=examples.json_schema_stage:JsonSchemaStage``,
with this directory's parent on the Python path. Needs the ``jsonschema``
package.
"""

from __future__ import annotations

from typing import Any

import jsonschema

from tidings import errors
from tidings.api.context import Context

METADATA_KEY = "json_schema"


class JsonSchemaStage:
    def __init__(self) -> None:
        # Compiled validators by schema text: most queues share few schemas.
        self._validators: dict[str, Any] = {}

    def _validator(self, schema: Any) -> Any:
        key = repr(schema)
        validator = self._validators.get(key)
        if validator is None:
            try:
                cls = jsonschema.validators.validator_for(schema)
                cls.check_schema(schema)
            except jsonschema.SchemaError as exc:
                raise errors.ValidationFailed(
                    f"The queue's json_schema is not a valid JSON schema: {exc.message}"
                ) from None
            validator = cls(schema)
            if len(self._validators) > 1024:
                self._validators.clear()
            self._validators[key] = validator
        return validator

    async def before_post(self, ctx: Context, queue: str, document: Any, **_: Any) -> None:
        """Runs before validation: skip what the operation will refuse anyway."""
        if not isinstance(document, dict) or not isinstance(document.get("messages"), list):
            return
        try:
            metadata = await ctx.storage.queues.get_metadata(ctx.project, queue)
        except errors.QueueDoesNotExist:
            return
        schema = metadata.get(METADATA_KEY)
        if schema is None:
            return
        validator = self._validator(schema)
        for index, message in enumerate(document["messages"]):
            if not isinstance(message, dict) or "body" not in message:
                continue
            error = jsonschema.exceptions.best_match(validator.iter_errors(message["body"]))
            if error is not None:
                where = "/".join(str(p) for p in error.absolute_path) or "(the body)"
                raise errors.ValidationFailed(
                    f"Message {index} does not match the queue's JSON schema at {where}: "
                    f"{error.message}"
                )
