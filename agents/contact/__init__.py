"""Contact policy and marketing suppression (seed 000 "电话营销打扰管控").

:mod:`agents.contact.policy` is the pure policy (data in ``agents/rules/contact-policy.yaml``),
:mod:`agents.contact.step` the ``contact-policy`` pipeline step; docs/contact-policy.md.
"""
