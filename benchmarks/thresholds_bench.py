import numpy as np, dataclasses, sys
import patentcpc
from patentcpc.data import load_data
from patentcpc.config import TrainConfig, LinearConfig
from patentcpc.calibration import out_of_fold_scores, fit_calibrator, multi_hot
from patentcpc.metrics import evaluate_scores, tune_global_threshold, tune_label_thresholds
from patentcpc.models.linear import LinearCPCModel
for s in (0,1,2):
    m=patentcpc.load_model(f'm_after_{s}'); tr=load_data(f'train{s}.jsonl'); te=load_data(f'test{s}.jsonl')
    lc=LinearConfig(C=0.5, learner="ovr")
    raw=out_of_fold_scores(lambda t,g: LinearCPCModel.fit(t,g,lc), tr.texts, tr.labels, m.labels, 5, 42)
    probs=m.calibrate(raw)
    g,_=tune_global_threshold(probs,tr.labels,m.labels)
    te_s=m.scores(te.texts)
    out=[]
    for ms in (5,10,20,50,10**9):
        th=tune_label_thresholds(probs,tr.labels,m.labels,g,ms)
        r=evaluate_scores(te_s,te.labels,m.labels,th)
        out.append(f"ms={ms}: micro {r['micro_f1']:.4f} macro {r['macro_f1']:.4f} n_lab {(th!=g).sum()}")
    print(s, round(g,3), ' | '.join(out), flush=True)
