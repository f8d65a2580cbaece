"""Markdown -> safe HTML for the feedback pages (guidelines, prompts, responses).

Two stages, both on the server, so the browser never parses untrusted markup itself:

1. markdown-it-py (CommonMark + tables + strikethrough) with raw HTML *off*: `<script>` or
   `<b onclick=...>` written in a response comes out as escaped text, not as tags;
2. nh3 (the Ammonia sanitizer) with an allow-list: only the tags Markdown produces, no event
   handler or style attributes, links only to http(s)/mailto (a `javascript:` link loses its
   href), `rel="noopener noreferrer nofollow"` on every link, no images (no tracking pixels, no
   requests to other hosts: an image shows as its alt text), no style attributes, and `class`
   only as `language-xyz` on `<code>` (fenced code blocks).

Stage 2 does not trust stage 1: whatever a future markdown-it option lets through still has to
pass the allow-list. Rendering is cached per text (the same responses are shown to k annotators).
"""

from __future__ import annotations

import functools
import re

import nh3
from markdown_it import MarkdownIt
from markdown_it.common.utils import escapeHtml

ALLOWED_TAGS = {
    "p", "br", "hr", "em", "strong", "del", "s", "code", "pre", "blockquote",
    "ul", "ol", "li", "a", "h1", "h2", "h3", "h4", "h5", "h6",
    "table", "thead", "tbody", "tr", "th", "td",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "code": {"class"}, "ol": {"start"}}
URL_SCHEMES = {"http", "https", "mailto"}
_LANGUAGE_CLASS = re.compile(r"^language-[\w+#.-]{1,40}$")

_md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False}).enable(
    ["table", "strikethrough"]
)
# Images become their alt text: no requests to other hosts from an annotation page.
_md.renderer.rules["image"] = lambda tokens, idx, _options, _env: escapeHtml(tokens[idx].content)  # type: ignore[attr-defined]


def _attribute_filter(tag: str, attr: str, value: str) -> str | None:
    if attr == "class":
        return value if tag == "code" and _LANGUAGE_CLASS.match(value) else None
    return value


def sanitize(html: str) -> str:
    """`html` with everything outside the allow-list removed (text content is kept, escaped)."""
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        attribute_filter=_attribute_filter,
        url_schemes=URL_SCHEMES,
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    )


@functools.lru_cache(maxsize=8192)
def render_markdown(text: str) -> str:
    """Safe HTML for a Markdown `text` (guidelines, a prompt, a model response)."""
    return sanitize(_md.render(text or ""))
