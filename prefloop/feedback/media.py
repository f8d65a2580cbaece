"""Media files (images, video clips) shown in tasks: what the server accepts and how it serves them.

A response of an item may show a clip (the control loop's trajectory segments, `prefloop control
--teacher human`) instead of, or beside, its text. Admins upload the file's bytes
(`POST /api/campaigns/{cid}/media`); items name it by `media_id`. Safety:

- the content type is **sniffed** from the first bytes, never taken from the client, and must be
  one of `store.MEDIA_TYPES` (GIF, PNG, WebP images; MP4, WebM video); anything else is a 415;
- images must decode (Pillow's `verify`) and stay within `MAX_PIXELS` (no decompression bombs);
- annotators get a file only through one of their own tasks
  (`GET /api/tasks/{task_id}/media/{response_id}`, the task's opaque response id): a file of
  another task or campaign is a 404, as for one that does not exist; admins read any by id;
- it is sent with the sniffed type, `Content-Disposition: inline`, `nosniff` and the server's
  Content-Security-Policy, and the page shows it through a `blob:` URL of the fetched bytes
  (the bearer token never goes into a URL).
"""

from __future__ import annotations

import hashlib
import io

MAX_PIXELS = 4096 * 4096
"""Largest width × height of an uploaded image."""


class MediaError(ValueError):
    """A file the server does not accept (the message says why); `status` is the HTTP answer."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


def sniff(data: bytes) -> str | None:
    """The media type of `data` from its magic bytes, or None when it is none of `MEDIA_TYPES`."""
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[4:8] == b"ftyp":
        return "video/mp4"
    if data[:4] == b"\x1a\x45\xdf\xa3":
        return "video/webm"
    return None


def check_media(data: bytes) -> tuple[str, str]:
    """(content type, sha256 hex) of an acceptable file; raises `MediaError` otherwise."""
    if not data:
        raise MediaError("empty file: send the clip's bytes as the request body")
    kind = sniff(data)
    if kind is None:
        raise MediaError(
            "unsupported media: the file is not a GIF, PNG, WebP, MP4 or WebM (judged by its first bytes)",
            status=415,
        )
    if kind.startswith("image/"):
        from PIL import Image

        try:
            with Image.open(io.BytesIO(data)) as img:
                width, height = img.size
                if width * height > MAX_PIXELS:
                    raise MediaError(f"image too large: {width}x{height} pixels (at most {MAX_PIXELS})")
                img.verify()
        except MediaError:
            raise
        except Exception as exc:  # Pillow raises many kinds for a broken file
            raise MediaError(f"broken {kind} file: {exc}") from None
    return kind, hashlib.sha256(data).hexdigest()
