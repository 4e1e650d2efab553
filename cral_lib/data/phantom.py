"""Kept for the old import path: the phantoms now live in :mod:`cral_lib.synthetic.phantom`.

``from cral_lib.data.phantom import make_phantom`` (and every public name this module had) still
works; each name is imported from its new module on first use.
"""

from __future__ import annotations

from .._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    name: "cral_lib.synthetic.phantom" for name in (
        "BOXED", "LungTemplates", "MAX_SIZE", "MIN_SIZE", "PHANTOM_VERSION", "Phantom", "SIGNATURES", "Scene",
        "TEMPLATE_COUNT", "TEMPLATE_RESOLUTION", "draw_scene", "lung_templates", "make_phantom", "render_scene")
})
