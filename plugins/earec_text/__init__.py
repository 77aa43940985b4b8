"""Built-in *text* modality: the item's metadata (other than its anchor) as plain prompt text.

Its encoder is the LLM's own word embeddings, so it has no projector and no placeholder.
"""

from earec_core import hookimpl
from earec_core.modality import Fragment, Modality


class TextModality(Modality):
    """Renders ``item.attributes`` as ``Description: release year: 1995; class: Animation …``.

    Options:
        fields: attribute names to include (default: all, in file order).
        max_chars: cut the description to this many characters (default 1000) so one
            verbose item cannot exhaust the token budget.
    """

    name = "text"
    code = "T"
    declared_options = {"fields": "item fields rendered in the prompt (default: all but id and anchor)",
                        "max_chars": "prompt text is cut to this many characters (default 1000)"}
    placeholder = None
    description = "item metadata as prompt text (LLM word embeddings, no projector)"

    def fragment(self, item, *, with_related: bool = True):
        fields = self.options.get("fields")
        attrs = {k: v for k, v in item.attributes.items() if (fields is None or k in fields) and v.strip()}
        if not attrs:
            return None
        body = "; ".join(f"{k.replace('_', ' ')}: {' '.join(v.split())}" for k, v in attrs.items())
        return Fragment(f"Description: {body[: int(self.options.get('max_chars', 1000))]}")


@hookimpl
def earec_register_modalities(register):
    register(TextModality)
