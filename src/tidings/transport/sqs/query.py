"""SQS's older query protocol: form-encoded ``Action=...`` requests and XML
answers, as SDKs from before SQS moved to AWS JSON 1.0 (botocore before
1.31, and the SDKs of other languages of that time) speak it.

The form's flattened names (``Attribute.1.Name``, ``MessageAttribute.2.
Value.DataType``, ``SendMessageBatchRequestEntry.3.Id``, ...) are turned into
the parameters the JSON protocol carries, so the same actions serve both;
their results are written back as SQS's XML.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl
from xml.sax.saxutils import escape

from tidings.transport.sqs.errors import SqsError
from tidings.transport.sqs.messages import INVALID_CHARACTER as INVALID_XML
from tidings.transport.sqs.messages import md5_of_body

NAMESPACE = "http://queue.amazonaws.com/doc/2012-11-05/"
CONTENT_TYPE = "text/xml"

INTEGERS = frozenset({"MaxNumberOfMessages", "VisibilityTimeout", "WaitTimeSeconds",
                      "DelaySeconds", "MaxResults", "MaxNumberOfMessagesPerSecond"})
# Flattened lists: the form's member name -> the parameter.
LISTS = {
    "AttributeName": "AttributeNames",
    "MessageAttributeName": "MessageAttributeNames",
    "MessageSystemAttributeName": "MessageSystemAttributeNames",
    "TagKey": "TagKeys",
    "SendMessageBatchRequestEntry": "Entries",
    "DeleteMessageBatchRequestEntry": "Entries",
    "ChangeMessageVisibilityBatchRequestEntry": "Entries",
    "AWSAccountId": "AWSAccountIds",
    "ActionName": "Actions",
}
# Flattened maps: the form's entry name -> (parameter, key field, value field).
MAPS = {
    "Attribute": ("Attributes", "Name", "Value"),
    "MessageAttribute": ("MessageAttributes", "Name", "Value"),
    "MessageSystemAttribute": ("MessageSystemAttributes", "Name", "Value"),
    "Tag": ("Tags", "Key", "Value"),
}
# Result members written as repeated elements, by the name each one takes.
LIST_ELEMENTS = {"QueueUrls": "QueueUrl", "queueUrls": "QueueUrl", "Messages": "Message",
                 "Failed": "BatchResultErrorEntry"}
MAP_ELEMENTS = {"Attributes": ("Attribute", "Name", "Value"),
                "MessageAttributes": ("MessageAttribute", "Name", "Value"),
                "Tags": ("Tag", "Key", "Value")}


# The actions whose answers hold no result element at all; the others
# have one, even empty (a ReceiveMessage that found nothing).
NO_RESULT = frozenset({"AddPermission", "ChangeMessageVisibility", "DeleteMessage",
                       "DeleteQueue", "PurgeQueue", "RemovePermission", "SetQueueAttributes",
                       "TagQueue", "UntagQueue"})


def is_query(content_type: str | None) -> bool:
    return (content_type or "").lower().startswith("application/x-www-form-urlencoded")


def _nest(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """``{"a.1.b": v}`` as ``{"a": {"1": {"b": v}}}``."""
    tree: dict[str, Any] = {}
    for key, value in pairs:
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise SqsError("InvalidParameterValue", f"The parameter {key} is malformed.")
            node = child
        if isinstance(node.get(leaf), dict):
            raise SqsError("InvalidParameterValue", f"The parameter {key} is malformed.")
        node[leaf] = value
    return tree


def _numbered(node: Any, name: str) -> list[Any]:
    """The members of a flattened list or map, ``name.1`` first."""
    if not isinstance(node, dict) or not all(k.isdigit() for k in node):
        raise SqsError("InvalidParameterValue", f"The parameter {name} must be numbered: "
                       f"{name}.1, {name}.2, ...")
    return [node[k] for k in sorted(node, key=int)]


def _integer(name: str, value: Any) -> Any:
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    # Left as it is: the action refuses it with SQS's message.
    return value


def _params(tree: dict[str, Any], action: str) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for key, value in tree.items():
        if key in INTEGERS:
            params[key] = _integer(key, value)
        elif key in LISTS:
            members = _numbered(value, key)
            params[LISTS[key]] = [_params(m, action) if isinstance(m, dict) else m
                                  for m in members]
        elif key in MAPS:
            target, key_field, value_field = MAPS[key]
            if key == "Tag" and action == "CreateQueue":
                target = "tags"
            entries = {}
            for entry in _numbered(value, key):
                if not isinstance(entry, dict) or not isinstance(entry.get(key_field), str):
                    raise SqsError("InvalidParameterValue",
                                   f"Each {key} needs a {key_field} and a {value_field}.")
                entries[entry[key_field]] = entry.get(value_field)
            params[target] = entries
        else:
            params[key] = value
    return params


def parse(body: bytes) -> tuple[str, dict[str, Any]]:
    """(action, parameters as the JSON protocol carries them) of a form."""
    try:
        pairs = parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise SqsError("InvalidParameterValue", "The request body is not valid UTF-8."
                       ) from None
    tree = _nest(pairs)
    action = tree.pop("Action", None)
    tree.pop("Version", None)
    if not isinstance(action, str) or not action:
        raise SqsError("MissingParameter", "The request must contain the parameter Action.")
    return action, _params(tree, action)


def _text(value: Any) -> str:
    # A body a Zaqar client posted may hold characters XML 1.0 cannot carry
    # (SQS refuses them on send): they read as U+FFFD rather than break the
    # whole answer.
    return escape(INVALID_XML.sub("\ufffd", str(value)))


def _xml(name: str, value: Any) -> str:
    if isinstance(value, bool):
        return f"<{name}>{'true' if value else 'false'}</{name}>"
    if isinstance(value, dict):
        return f"<{name}>{_members(value, name)}</{name}>"
    return f"<{name}>{_text(value)}</{name}>"


def _members(document: dict[str, Any], action: str) -> str:
    out = []
    for key, value in document.items():
        if key in MAP_ELEMENTS and isinstance(value, dict):
            element, key_field, value_field = MAP_ELEMENTS[key]
            out += [f"<{element}>{_xml(key_field, k)}{_xml(value_field, v)}</{element}>"
                    for k, v in value.items()]
        elif key == "Successful" and isinstance(value, list):
            out += [_xml(f"{action}ResultEntry", entry) for entry in value]
        elif key in LIST_ELEMENTS and isinstance(value, list):
            out += [_xml(LIST_ELEMENTS[key], item) for item in value]
        else:
            out.append(_xml(key, value))
    return "".join(out)


def _xml_safe_message(message: dict[str, Any]) -> dict[str, Any]:
    """A received message whose body XML can carry, its MD5 to match."""
    body = message.get("Body")
    if not isinstance(body, str) or not INVALID_XML.search(body):
        return message
    body = INVALID_XML.sub("\ufffd", body)
    return {**message, "Body": body, "MD5OfBody": md5_of_body(body)}


def answer(action: str, result: dict[str, Any], request_id: str) -> bytes:
    """The XML answer of an action's result."""
    if "Messages" in result:
        result = {**result, "Messages": [_xml_safe_message(m) for m in result["Messages"]]}
    body = f'<{action}Response xmlns="{NAMESPACE}">'
    if action not in NO_RESULT:
        body += f"<{action}Result>{_members(result, action)}</{action}Result>"
    body += (f"<ResponseMetadata><RequestId>{escape(request_id)}</RequestId>"
             f"</ResponseMetadata></{action}Response>")
    return body.encode()


def error_answer(code: str, sender: bool, message: str, request_id: str) -> bytes:
    return (f'<ErrorResponse xmlns="{NAMESPACE}"><Error>'
            f"<Type>{'Sender' if sender else 'Receiver'}</Type><Code>{escape(code)}</Code>"
            f"<Message>{_text(message)}</Message><Detail/></Error>"
            f"<RequestId>{escape(request_id)}</RequestId></ErrorResponse>").encode()
