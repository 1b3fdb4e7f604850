"""Foresight's runtime: settings, topics, the local broker, the Faust app, the processing
unit (packer, envelopes, state store, transactional committer), the simulator and the CLI."""
