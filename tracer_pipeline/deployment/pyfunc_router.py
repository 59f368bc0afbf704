"""The router as an MLflow pyfunc model, logged as code (models-from-code: nothing pickled).

`mlflow.pyfunc.load_model("models:/tracer-surrogate@champion").predict(df)` takes a frame with
a `text` column and returns the surrogate's label, whether it handled the text (else the caller
asks the LLM), and the acceptor score.
"""

from __future__ import annotations

import mlflow
import pandas as pd


class SurrogateRouterModel(mlflow.pyfunc.PythonModel):
    """Embeds texts with the packaged embedder and routes them with the certified policy."""

    def load_context(self, context) -> None:
        from pathlib import Path

        from tracer_pipeline.deployment.router import Router

        model_folder = Path(context.artifacts["policy"]).parent
        self.router = Router.from_artifacts(model_folder)

    def predict(self, context, model_input, params=None) -> pd.DataFrame:
        if isinstance(model_input, pd.DataFrame):
            texts = model_input["text"].astype(str).tolist()
        else:
            texts = [str(text) for text in model_input]
        routed = self.router.route(texts)
        return pd.DataFrame(
            {
                "label": [r.surrogate_label for r in routed],
                "handled": [r.handled for r in routed],
                "score": [r.score for r in routed],
            }
        )


mlflow.models.set_model(SurrogateRouterModel())
