"""Not-found errors, mapped in one place: every ``NotFoundError`` of the library becomes OpenAI's 404 (code
``<kind>_not_found``, the parameter that named the id) in ``server._errors.from_library``; through the real server
and the unmodified `openai` SDK, for each kind the server serves. And the unknown-URL 404 names every API root."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest

from tuneloop import errors
from tuneloop.errors import ID_PARAMS, NotFoundError
from tuneloop.serving import from_library

KEY = "sk-errors-test-key-0123456789"
BASE = "smollm2-135m-instruct"
CODES = {
    "thread": "thread_not_found",
    "conversation": "conversation_not_found",
    "item": "item_not_found",
    "response": "response_not_found",
    "chat.completion": "chat_completion_not_found",
    "fine_tuning.job": "fine_tuning_job_not_found",
    "file": "file_not_found",
}
WHERE = "/srv/secret/tuneloop.db"  # a store location, as the library's messages say it


def subclasses(cls: type) -> Iterator[type]:
    for sub in cls.__subclasses__():
        yield sub
        yield from subclasses(sub)


LIBRARY_NOT_FOUND = sorted({c for c in subclasses(NotFoundError) if c.__module__ == errors.__name__},
                           key=lambda c: c.__name__)


# --- the mapping, without a server -----------------------------------------------------------------------------


def test_the_not_found_errors_are_the_ones_the_store_raises_from_their_old_places() -> None:
    from tuneloop.engine import inspection
    from tuneloop.models import ModelTooLargeError, ModelUnusableError
    from tuneloop.store import api_objects, conversations, dialogue, files, jobs

    assert {c.__name__ for c in LIBRARY_NOT_FOUND} >= {"ThreadNotFoundError", "ItemNotFoundError",
                                                        "ObjectNotFoundError", "JobNotFoundError",
                                                        "FileNotFoundInStoreError"}
    assert dialogue.ThreadNotFoundError is conversations.ThreadNotFoundError is errors.ThreadNotFoundError
    assert conversations.ItemNotFoundError is errors.ItemNotFoundError
    assert api_objects.ObjectNotFoundError is errors.ObjectNotFoundError
    assert jobs.JobNotFoundError is errors.JobNotFoundError
    assert files.FileNotFoundInStoreError is errors.FileNotFoundInStoreError
    assert jobs.JobStateError is errors.JobStateError
    assert inspection.ModelTooLargeError is ModelTooLargeError is errors.ModelTooLargeError
    assert inspection.ModelUnusableError is ModelUnusableError is errors.ModelUnusableError
    assert all(issubclass(c, errors.StoreError) for c in LIBRARY_NOT_FOUND)


@pytest.mark.parametrize("cls", LIBRARY_NOT_FOUND, ids=lambda c: c.__name__)
def test_every_not_found_error_is_a_404_with_its_param(cls: type[NotFoundError]) -> None:
    exc = cls(f"no such thing 'x-1' in {WHERE}", "x-1")
    answer = from_library(exc)
    assert answer.status == 404 and answer.type == "invalid_request_error"
    assert answer.param == exc.param == ID_PARAMS.get(exc.kind)
    assert answer.code == exc.kind.replace(".", "_") + "_not_found"
    assert "'x-1'" in answer.message and WHERE not in answer.message
    assert str(exc) == f"no such thing 'x-1' in {WHERE}"  # the library's own message (the CLI's) is kept

    named = cls("gone", "x-2", param="some_param")
    assert from_library(named).param == "some_param" and from_library(named).status == 404
    renamed = named.named_by("other_param")
    assert type(renamed) is cls and renamed.ident == "x-2" and str(renamed) == "gone"
    assert from_library(renamed).param == "other_param"


@pytest.mark.parametrize("kind", sorted(CODES))
def test_each_kind_has_its_code_and_id_param(kind: str) -> None:
    answer = from_library(NotFoundError(f"no {kind} in {WHERE}", "id-1", kind=kind, within="conv_1"))
    assert (answer.status, answer.code, answer.param) == (404, CODES[kind], ID_PARAMS[kind])
    assert "'id-1'" in answer.message and WHERE not in answer.message


def test_an_id_that_is_not_the_object_asked_for_is_a_400() -> None:
    after = from_library(errors.ObjectNotFoundError("no page anchor", "chatcmpl-x", kind="chat.completion",
                                                    param="after"))
    assert (after.status, after.param) == (400, "after") and "'chatcmpl-x'" in after.message
    for param in ("training_file", "validation_file"):
        answer = from_library(errors.FileNotFoundInStoreError(f"no file in {WHERE}", "file-x").named_by(param))
        assert (answer.status, answer.param, answer.code) == (400, param, f"invalid_{param}")
        assert "'file-x'" in answer.message and WHERE not in answer.message


# --- through the server ----------------------------------------------------------------------------------------


def error_of(call: Callable[[], Any], server: Any, status: int = 404) -> dict[str, Any]:
    """OpenAI's error body of a call the SDK turned into an exception (checked: the shape, no store path)."""
    with pytest.raises(openai.APIStatusError) as caught:
        call()
    assert caught.value.status_code == status, caught.value
    body = caught.value.body
    assert isinstance(body, dict) and set(body) == {"message", "type", "param", "code"}, body
    assert body["type"] == "invalid_request_error" and body["message"]
    assert str(server.home) not in body["message"]
    return body


def assert_not_found(body: dict[str, Any], code: str, param: str, ident: str) -> None:
    assert (body["code"], body["param"]) == (code, param), body
    assert repr(ident) in body["message"], body


def test_a_missing_conversation(client: openai.OpenAI, server: Any) -> None:
    for call in (lambda: client.conversations.retrieve("conv_nope"),
                 lambda: client.conversations.update("conv_nope", metadata={"a": "b"}),
                 lambda: client.conversations.delete("conv_nope"),
                 lambda: client.conversations.items.list("conv_nope"),
                 lambda: client.conversations.items.create("conv_nope", items=[
                     {"type": "message", "role": "user", "content": "Hi"}]),
                 lambda: client.conversations.items.retrieve("msg_nope", conversation_id="conv_nope")):
        assert_not_found(error_of(call, server), "conversation_not_found", "conversation_id", "conv_nope")


def test_a_missing_conversation_named_in_a_new_response_is_its_conversation_param(client: openai.OpenAI,
                                                                                   server: Any) -> None:
    body = error_of(lambda: client.responses.create(model=BASE, input="Hi", conversation="conv_nope"), server)
    assert_not_found(body, "conversation_not_found", "conversation", "conv_nope")


def test_a_missing_item_of_a_conversation(client: openai.OpenAI, server: Any) -> None:
    conversation = client.conversations.create(items=[{"type": "message", "role": "user", "content": "Hello"}])
    for call in (lambda: client.conversations.items.retrieve("msg_nope", conversation_id=conversation.id),
                 lambda: client.conversations.items.delete("msg_nope", conversation_id=conversation.id)):
        body = error_of(call, server)
        assert_not_found(body, "item_not_found", "item_id", "msg_nope")
        assert conversation.id in body["message"]


def test_a_missing_response(client: openai.OpenAI, server: Any) -> None:
    for call in (lambda: client.responses.retrieve("resp_nope"),
                 lambda: client.responses.delete("resp_nope"),
                 lambda: client.responses.input_items.list("resp_nope")):
        assert_not_found(error_of(call, server), "response_not_found", "response_id", "resp_nope")


def test_a_missing_stored_chat_completion(client: openai.OpenAI, server: Any) -> None:
    for call in (lambda: client.chat.completions.retrieve("chatcmpl-nope"),
                 lambda: client.chat.completions.update("chatcmpl-nope", metadata={"rating": "good"}),
                 lambda: client.chat.completions.delete("chatcmpl-nope"),
                 lambda: client.chat.completions.messages.list("chatcmpl-nope")):
        assert_not_found(error_of(call, server), "chat_completion_not_found", "completion_id", "chatcmpl-nope")
    after = error_of(lambda: client.chat.completions.list(after="chatcmpl-nope"), server, 400)
    assert after["param"] == "after" and "'chatcmpl-nope'" in after["message"]


def test_a_missing_fine_tuning_job(client: openai.OpenAI, server: Any) -> None:
    for call in (lambda: client.fine_tuning.jobs.retrieve("ftjob-nope"),
                 lambda: client.fine_tuning.jobs.cancel("ftjob-nope"),
                 lambda: client.fine_tuning.jobs.list_events("ftjob-nope"),
                 lambda: client.fine_tuning.jobs.checkpoints.list("ftjob-nope")):
        assert_not_found(error_of(call, server), "fine_tuning_job_not_found", "fine_tuning_job_id", "ftjob-nope")
    after = error_of(lambda: client.fine_tuning.jobs.list(after="ftjob-nope"), server, 400)
    assert after["param"] == "after" and "'ftjob-nope'" in after["message"]


def test_a_missing_file(client: openai.OpenAI, server: Any) -> None:
    for call in (lambda: client.files.retrieve("file-nope"),
                 lambda: client.files.content("file-nope"),
                 lambda: client.files.delete("file-nope")):
        assert_not_found(error_of(call, server), "file_not_found", "file_id", "file-nope")


def test_a_missing_file_for_a_new_job_is_a_400_naming_its_param(client: openai.OpenAI, server: Any) -> None:
    body = error_of(lambda: client.fine_tuning.jobs.create(model=BASE, training_file="file-nope"), server, 400)
    assert (body["param"], body["code"]) == ("training_file", "invalid_training_file")
    body = error_of(lambda: client.fine_tuning.jobs.create(model=BASE, training_file="file-nope",
                                                           validation_file="file-gone"), server, 400)
    assert (body["param"], body["code"]) == ("validation_file", "invalid_validation_file")
    assert "'file-gone'" in body["message"]


def test_an_unknown_url_lists_every_api_the_server_serves(http: httpx.Client) -> None:
    answer = http.get("/assistants")
    assert answer.status_code == 404
    error = answer.json()["error"]
    assert error["code"] == "unknown_url" and "GET /v1/assistants" in error["message"]
    served = error["message"].split("this server serves ", 1)[1]
    for root in ("/v1/models", "/v1/chat/completions", "/v1/files", "/v1/fine_tuning/jobs", "/v1/responses",
                 "/v1/conversations"):
        assert root in served, served
    assert "{" not in served  # roots, not routes with parameters
