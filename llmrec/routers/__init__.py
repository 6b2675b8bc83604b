"""Layer 3: every router behind one small interface (see :mod:`llmrec.routers.base`)."""

from .base import (ROUTERS, Router, available_routers, llm_costs, load_router, make_router,
                   register_router)
from .baselines import (BestPerGroupRouter, BestSingleRouter, OracleMixRouter, OracleRouter,
                        RandomRouter)

__all__ = ["Router", "make_router", "available_routers", "load_router", "register_router",
           "ROUTERS", "llm_costs", "RandomRouter", "BestSingleRouter", "OracleRouter",
           "OracleMixRouter", "BestPerGroupRouter"]
from .classifiers import ClusterRouter, KnnRouter, LinearRouter, MLCRouter, MLPRouter  # noqa
__all__ += ["KnnRouter", "LinearRouter", "MLPRouter", "ClusterRouter", "MLCRouter"]
from .neural import TextMFRouter, TwoTowerRouter  # noqa: E402  (torch is imported in fit only)
__all__ += ["TextMFRouter", "TwoTowerRouter"]

from .cf import ALSRouter, BPRRouter  # noqa: E402
from .lightfm_router import LightFMRouter  # noqa: E402  (lightfm itself is imported at fit)

__all__ += ["ALSRouter", "BPRRouter", "LightFMRouter"]
from .routereval_baselines import (REClusterRouter, RELinearRouter, REMLPRouter,  # noqa: E402
                                   REPrknnRouter)

__all__ += ["REPrknnRouter", "REClusterRouter", "RELinearRouter", "REMLPRouter"]
from .bayes import BayesLinearRouter  # noqa: E402

__all__ += ["BayesLinearRouter"]
from .auto import AutoRouter  # noqa: E402

__all__ += ["AutoRouter"]
