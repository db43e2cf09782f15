"""The tenant names every service agrees on.

A call that carries no tenant acts for DEFAULT_TENANT (AUTOML_AUTH=none: the
single embedded tenant); ALL_TENANTS in a call's tenant metadata asks for
every tenant at once, which only some callers may (automl.common.identity).
"""

from __future__ import annotations

DEFAULT_TENANT = "default"
ALL_TENANTS = "*"
