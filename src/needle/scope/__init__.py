"""needle scope: a Neuroscope-style static site of probing results and neurons, and a local interactive viewer.

Modules, one job each:

- :mod:`~needle.scope.tables` — what the site shows about probes, from a results table alone;
- :mod:`~needle.scope.site` — :func:`build_site`, the static site (index, feature and neuron pages, search);
- :mod:`~needle.scope.render` / :mod:`~needle.scope.svg` — highlighted token contexts, inline SVG charts;
- :mod:`~needle.scope.viewer` — :class:`Viewer`, a neuron's or probe's activations on typed text;
- :mod:`~needle.scope.server` — :func:`make_server`, the viewer behind HTTP on 127.0.0.1.
"""

from needle.scope.server import make_server, serve_in_thread
from needle.scope.site import SiteOptions, build_site, default_corpus, model_for_cache
from needle.scope.tables import NeuronRef, neuron_id, parse_neuron_id, probe_catalogue, referenced_neurons
from needle.scope.viewer import Viewer

__all__ = [
    "build_site",
    "SiteOptions",
    "default_corpus",
    "model_for_cache",
    "Viewer",
    "make_server",
    "serve_in_thread",
    "NeuronRef",
    "neuron_id",
    "parse_neuron_id",
    "probe_catalogue",
    "referenced_neurons",
]
