"""echolib: the library behind the multi-view echocardiography video-CLIP compendium.

Notebooks (one per DVC stage) stay thin and call into this package; nothing heavy happens at import time. Importing
it defers one slow, unused import of a third-party package (`echolib.startup`: same behaviour, seconds less per
process).
"""

from .startup import defer_rfc3987_syntax as _defer

__version__ = "0.1.0"

_defer()
