"""The linear-bayes router passes the conformance mixin."""

from llmrec.routers import make_router

from .router_conformance import RouterConformance, small_encoder


class TestLinearBayes(RouterConformance):
    fit_kwargs = {"encoder": small_encoder()}

    def make(self):
        return make_router("linear-bayes", alpha=10.0)
