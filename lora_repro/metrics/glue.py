"""The GLUE metrics as the paper reports them (Table 2): accuracy, Matthews (CoLA), Pearson (STS-B), F1 beside."""
import datasets
import evaluate
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import f1_score, matthews_corrcoef

SUBSETS = ("cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte")


class Glue(evaluate.Metric):
    """evaluate-compatible GLUE metric; `Glue(config_name="cola").compute(predictions=..., references=...)`."""

    def _info(self):
        if self.config_name not in SUBSETS:
            raise KeyError(f"GLUE metric config {self.config_name!r}; choose one of {list(SUBSETS)}")
        kind = "float32" if self.config_name == "stsb" else "int64"
        return evaluate.MetricInfo(
            description="GLUE dev-set metrics as reported by the LoRA paper.",
            citation="Wang et al., GLUE, ICLR 2019",
            inputs_description="predictions: predicted labels (scores for stsb); references: gold labels",
            features=datasets.Features({"predictions": datasets.Value(kind), "references": datasets.Value(kind)}))

    def _compute(self, predictions, references):
        if self.config_name == "cola":
            return {"matthews_correlation": float(matthews_corrcoef(references, predictions))}
        if self.config_name == "stsb":
            return {"pearson": float(pearsonr(predictions, references)[0]),
                    "spearmanr": float(spearmanr(predictions, references)[0])}
        accuracy = sum(int(p == r) for p, r in zip(predictions, references)) / len(references)
        if self.config_name in ("mrpc", "qqp"):
            return {"accuracy": accuracy, "f1": float(f1_score(references, predictions))}
        return {"accuracy": accuracy}
