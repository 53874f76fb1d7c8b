"""A Hugging Face image-text-to-text model from a local folder, served by ``tuneloop serve --vision-model PATH``.

Images arrive as ``image_url`` content parts holding ``data:`` URLs; each goes through
:func:`tuneloop.providers.images.prepare_image` (bombs and broken files are refused before decoding) and then to
the model's own processor. The server never fetches an ``http(s)`` URL.
"""

from __future__ import annotations

import base64
import binascii
import io
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from tuneloop.engine.weights import offline_environment
from tuneloop.errors import ImageInputError, InputError, ModelLoadError
from tuneloop.generation import first_stop
from tuneloop.providers.base import GenerationOptions, GenerationResult, ModelInfo, Provider, StopCheck, TextStream
from tuneloop.providers.images import prepare_image


def decode_data_url(url: str, where: str) -> bytes:
    if not url.startswith("data:"):
        raise ImageInputError(f"{where}: only data: URLs are accepted (data:image/png;base64,…); this server does "
                              "not fetch images from the network", where)
    header, _, payload = url.partition(",")
    if not header.endswith(";base64"):
        raise ImageInputError(f"{where}: the data URL must be base64-encoded", where)
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ImageInputError(f"{where}: the data URL is not valid base64", where) from None


class VisionProvider(Provider):
    """One image-text-to-text model (AutoModelForImageTextToText + AutoProcessor); one generation at a time."""

    name = "vision"

    def __init__(self, path: Path) -> None:
        self.path = Path(path).expanduser()
        self.model_id = self.path.resolve().name
        if not (self.path / "config.json").is_file():
            raise ModelLoadError(f"--vision-model {self.path}: no config.json there; give the folder of a Hugging "
                                 "Face image-text-to-text model (saved with save_pretrained)")
        offline_environment()
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        self._torch = torch
        try:
            self.processor = AutoProcessor.from_pretrained(str(self.path), local_files_only=True)
            self.model = AutoModelForImageTextToText.from_pretrained(str(self.path), local_files_only=True,
                                                                     dtype=torch.float32).eval()
        except (OSError, ValueError, KeyError) as exc:
            raise ModelLoadError(f"--vision-model {self.path}: cannot load it as an image-text-to-text model: "
                                 f"{exc}") from None
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        self.created = int(self.path.stat().st_mtime)
        self._lock = threading.Lock()

    def models(self) -> list[ModelInfo]:
        return [ModelInfo(self.model_id, self.name, "vision", f"from {self.path}", vision=True)]

    def conversation(self, messages: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[Any]]:
        """OpenAI messages → the processor's conversation (``{"type": "image"}`` placeholders) and the images."""
        from PIL import Image

        conversation, images = [], []
        for i, message in enumerate(messages):
            content = message["content"]
            if isinstance(content, str):
                conversation.append({"role": message["role"], "content": [{"type": "text", "text": content}]})
                continue
            parts = []
            for j, part in enumerate(content):
                if part.get("type") == "image_url":
                    where = f"messages[{i}].content[{j}]"
                    url = (part.get("image_url") or {}).get("url")
                    if not isinstance(url, str):
                        raise ImageInputError(f"{where}.image_url.url is required", where)
                    prepared = prepare_image(decode_data_url(url, where))
                    images.append(Image.open(io.BytesIO(prepared.data)).convert("RGB"))
                    parts.append({"type": "image"})
                else:
                    parts.append({"type": "text", "text": part.get("text") or part.get("refusal") or ""})
            conversation.append({"role": message["role"], "content": parts})
        return conversation, images

    def stream(self, messages: Sequence[dict[str, Any]], options: GenerationOptions = GenerationOptions(), *,
               model: str, should_stop: StopCheck | None = None) -> TextStream:
        for name, value in (("response_format", options.output), ("logprobs", options.logprobs is not None),
                            ("presence_penalty", options.presence_penalty),
                            ("frequency_penalty", options.frequency_penalty)):
            if value:
                raise InputError(f"{name} is not supported by the local vision model {model!r}", param=name)
        temperature, max_tokens, stop = options.temperature, options.max_tokens, list(options.stop)
        conversation, images = self.conversation(messages)
        prompt = self.processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
        inputs = self.processor(images=images or None, text=prompt, return_tensors="pt")
        result = GenerationResult(tokens_in=int(inputs["input_ids"].shape[1]))
        return TextStream(self._generate(inputs, result, temperature, max_tokens, stop, should_stop), result)

    def _generate(self, inputs: Any, result: GenerationResult, temperature: float, max_tokens: int,
                  stop: list[str], should_stop: Callable[[], bool] | None) -> Iterator[str]:
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        halt = threading.Event()  # set when the reader stops early (a stop string, a client gone)

        class Stop(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
                return halt.is_set() or bool(should_stop and should_stop())

        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        output: dict[str, Any] = {}
        options: dict[str, Any] = {"max_new_tokens": max_tokens, "streamer": streamer,
                                   "stopping_criteria": StoppingCriteriaList([Stop()])}
        options.update({"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False})

        def work() -> None:
            try:
                with self._torch.inference_mode():
                    output["ids"] = self.model.generate(**inputs, **options)
            except BaseException as exc:  # noqa: BLE001 - re-raised in the reading thread
                output["error"] = exc
                streamer.end()

        started = time.perf_counter()
        result.finish_reason = "interrupted"
        with self._lock:
            thread = threading.Thread(target=work, name="tuneloop-vision", daemon=True)
            thread.start()
            text = ""
            try:
                for piece in streamer:
                    if not piece:
                        continue
                    if result.first_token_seconds is None:
                        result.first_token_seconds = time.perf_counter() - started
                    combined = text + piece
                    hit = first_stop(combined, stop)
                    if hit is not None:
                        combined = combined[:hit]
                    piece, text = combined[len(text) :], combined
                    result.text = text
                    if piece:
                        yield piece
                    if hit is not None:
                        result.finish_reason = "stop"
                        return
            finally:
                halt.set()
                thread.join()
                result.seconds = time.perf_counter() - started
                if "ids" in output:
                    result.tokens_out = int(output["ids"].shape[1] - inputs["input_ids"].shape[1])
            if "error" in output:
                raise output["error"]
            generated = result.tokens_out
            if result.finish_reason == "interrupted" and not (should_stop and should_stop()):
                result.finish_reason = "length" if generated >= max_tokens else "stop"
