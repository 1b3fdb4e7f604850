"""The contact-center agent screen (seed 001 "一键综合查询", "来话同步维系", "渠道协同"):

* :mod:`agents.screen.bundle` builds one subscriber's bundle from the other steps' state (pure);
* :mod:`agents.screen.step` is the ``screen-pop`` step: answered hotline calls become pops.
"""
