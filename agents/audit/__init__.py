"""Cross-system audit (seed 001 "稽核预处理"): rules as data over the unified view.

* :mod:`agents.audit.catalog` loads and checks the YAML rule catalog;
* :mod:`agents.audit.expr` compiles rule expressions (a safe subset of Python);
* :mod:`agents.audit.facts` declares what expressions can read and which events change it;
* :mod:`agents.audit.items` declares what ``each`` rules iterate and the items' fields;
* :mod:`agents.audit.step` is the pipeline step (:class:`Audit`) with the episode lifecycle;
* :mod:`agents.audit.episodes` builds fingerprints, alerts and agent hints;
* :mod:`agents.audit.testing` drives the view and the audit like the runtime, for tests.

See docs/audit.md.
"""

from agents.audit.catalog import Catalog, Rule, default_catalog_path, load_catalog, parse_catalog
from agents.audit.episodes import fingerprint, open_episodes, pending_episodes
from agents.audit.step import Audit

__all__ = ["Audit", "Catalog", "Rule", "default_catalog_path", "fingerprint", "load_catalog",
           "open_episodes", "parse_catalog", "pending_episodes"]
