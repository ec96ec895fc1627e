"""Hypothesis strategies shared by the operator unit tests."""

from __future__ import annotations

from hypothesis import strategies as st

#: One RFC 1123 label: lowercase alphanumerics and '-', alphanumeric at both ends, 1..40 chars.
dns_label = st.text(alphabet="abz019-", min_size=1, max_size=40).map(lambda s: s.strip("-") or "a")

#: A valid QueueJob name: an RFC 1123 subdomain (dot-separated labels), at most 245 characters
#: (what the API server accepts for a custom resource without the CRD's own length rule).
queuejob_name = st.lists(dns_label, min_size=1, max_size=6).map(".".join)

#: A QueueJob name the CRD admits: a DNS label (no '.') of at most 52 characters.
admitted_queuejob_name = st.text(alphabet="abz019-", min_size=1, max_size=52).map(
    lambda s: s.strip("-") or "a"
)
