"""AWS Application Load Balancer (``aws-alb``): URL-encoded PEM, ``+`` left literal.

Verify mode sends the leaf in ``X-Amzn-Mtls-Clientcert-Leaf`` and the chain in
``X-Amzn-Mtls-Clientcert``; passthrough mode sends only the latter, leaf first, which is
why this source takes the leaf from the chain when the leaf header is absent.

Must not import ``registry``, ``config`` or ``read``, nor ``language/`` or ``evaluation/``.
"""

from __future__ import annotations

from policyengine.request.der import pem_blocks
from policyengine.request.sources.record import Decoded, Limits, Source
from policyengine.request.sources.text import (
    HEADER_SPACE,
    check_text,
    leaf_and_rest,
    percent_decode,
)


def decode_aws_alb(value: str, limits: Limits, notes: list[str]) -> Decoded:
    """URL-encoded PEM "with +=/ as safe characters": ``+`` is literal, so ``unquote`` only."""
    text = value.strip(HEADER_SPACE)
    if not text:
        return None, []
    check_text(text)
    return leaf_and_rest(pem_blocks(percent_decode(text), limits))


AWS_ALB = Source(
    "aws-alb",
    "X-Amzn-Mtls-Clientcert-Leaf",
    decode_aws_alb,
    chain_header="X-Amzn-Mtls-Clientcert",
    leaf_from_chain="ALB passthrough mode",
    fed_by=frozenset({"nginx"}),
)
