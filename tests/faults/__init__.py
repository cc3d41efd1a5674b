"""The fault suite: what a client sees and what stays true when the upstream, the store or the
gateway itself fails."""
