"""YAML text to data: libyaml's parser where PyYAML was built with it (several times faster on rendered cloud-init
and Compose files), PyYAML's own otherwise. A text that does not parse is parsed again by PyYAML's own parser, so an
error (its message, line and column) reads the same on every machine."""

from __future__ import annotations

from typing import Any

import yaml

_FAST = getattr(yaml, "CSafeLoader", None)


def safe_load(text: str) -> Any:
    """yaml.safe_load(text), faster; raises yaml.YAMLError as it does."""
    if _FAST is not None:
        loader = _FAST(text)   # what yaml.safe_load does, with the C parser
        try:
            return loader.get_single_data()
        except yaml.YAMLError:
            pass
        finally:
            loader.dispose()
    return yaml.safe_load(text)
