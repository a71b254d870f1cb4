"""Page slugs: the stable, URL-safe name of a page, derived from its title in any script."""
import re
import unicodedata

_APOSTROPHES = re.compile(r"['\u2019]")
_NOT_WORD = re.compile(r"[\W_]+", re.UNICODE)


def slugify(title: str) -> str:
    """Lower-case, apostrophes dropped, every run of non letters/digits replaced by '-'.

    Letters of every script are kept, so "Ōsaka École" gives "ōsaka-école"; an empty result
    means the title has no letters or digits at all.
    """
    text = unicodedata.normalize("NFKC", title or "").lower()
    text = _APOSTROPHES.sub("", text)
    return _NOT_WORD.sub("-", text).strip("-")[:200]
