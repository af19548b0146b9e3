"""Names in policyengine/ that are used where vulture cannot see it: read by vulture
alongside the package (scripts/test), never imported. Each entry says who uses the name.
Add a name here only when something outside the package's own calls really uses it;
dead code is deleted instead.

Attribute-style entries (``_.name``) cover a method, property or attribute of that name
on any class; bare names cover a variable or parameter.
"""

# ruff: noqa
# mypy: ignore-errors

# -- framework hooks -----------------------------------------------------------------------

# Django's middleware protocol (integrations/django.py): Django reads these flags to run
# the middleware without a thread hop under WSGI and under ASGI, and calls process_view
# (with view_args and view_kwargs, named as Django documents them) once the URL resolved.
sync_capable
async_capable
_.process_view
view_args
view_kwargs

# Starlette's authentication (integrations/starlette.py): AuthenticationMiddleware calls a
# backend's authenticate, and request.user is read through BaseUser's properties.
_.authenticate
_.is_authenticated
_.display_name

# lark calls a Transformer's methods by the name of the grammar rule they build
# (language/parser.py and language/grammar.lark).
_.or_expr
_.and_expr
_.negation
_.comparison
_.quantified
_.quantifier
_.op
_.expires_within
_.path_excluded
_.name
_.list_literal
_.string
_.integer
_.duration
_.timestamp
_.true
_.false

# The descriptor protocol: Python passes the owner class to __get__ and __set_name__.
owner

# A module's __getattr__ and __dir__ (PEP 562): Python calls them for a name the module
# does not define yet, as policyengine/__init__.py does to import its public names lazily.
__getattr__
__dir__

# -- read by a name composed at run time -----------------------------------------------------

# Certificate facts the attribute readers fetch with getattr/attrgetter from a name in a
# table or built from parts (f"{which}_single", f"{algorithm}_token", the SAN kinds, the
# extension fields): request/certificate.py, read by the vocabulary's readers.
_.subject_single
_.issuer_single
_.sha1_token
_.sha256_token
_.lifetime
_.key_curve
_.signature_hash
_.san_dns
_.san_email
_.san_ip
_.san_upn
_.spiffe_id
_.eku
_.key_usage
_.certificate_policies
_.subject_key_id
_.authority_key_id

# -- public API that applications use ------------------------------------------------------

# ReloadingPolicy.reloads and .watched: what an application checks after editing its
# policy (docs/integrations.md, "Policy reload").
_.reloads
_.watched
# IssuedCertificate.key_pem: the private key for a test server (docs/testing.md).
_.key_pem
# OcspResponder.requests and .reread: what a test asks of its responder (docs/testing.md).
_.requests
_.reread
# Identity.has_role: what an application asks of a decision's identity (docs/identity.md).
_.has_role
# Answers.settle: a test waits for the fetches under way (a background renewal) before it
# moves its clock on (tests/test_distribution_points.py, docs/trust.md).
_.settle

# -- called by the server libraries ---------------------------------------------------------

# ExtAuthz.Check: grpcio calls the Authorization service's method by its name.
_.Check
# uvicorn.Server.capture_signals is overridden, and .should_exit set, to own the signals.
_.capture_signals
_.should_exit
