package main

import (
	"fmt"
	"math"
	"strings"

	"github.com/gradlab/gradlab/experiments/harness"
	"github.com/gradlab/gradlab/model"
	"github.com/gradlab/gradlab/moe"
)

const mlaMoEClaim = "Muon: Training and Trade-offs (C2): MLA+MoE+Muon gives 68% memory reduction, a 3.2x inference speed-up and 8–12% better perplexity."

func init() {
	harness.Register(&harness.Experiment{Name: "mla-moe", Claim: mlaMoEClaim, Default: false, Run: runMLAMoE})
}

type mlaArch struct {
	Name string
	Cfg  model.Config
}

type mlaMoECfg struct {
	Corpus     string             `json:"corpus"`
	Archs      map[string]string  `json:"architectures"`
	Batch      int                `json:"batch"`
	Steps      int                `json:"steps"`
	Warmup     int                `json:"warmup_steps"`
	EvalEvery  int                `json:"eval_every"`
	CurveBatch int                `json:"curve_eval_batches"`
	FinalBatch int                `json:"final_eval_batches"`
	Optimizers map[string]float64 `json:"optimizers_peak_lr"`
	MuonAuxLR  float64            `json:"muon_adamw_side_lr"`
	AdamWWD    float64            `json:"adamw_weight_decay"`
	Seed       int64              `json:"seed"`
	GenTokens  int                `json:"generated_tokens"`
	MoE        string             `json:"moe"`
}

type mlaRun struct {
	ai, oi int
	spec   lmRunSpec
	res    lmRunResult
}

func mlaArchs() []mlaArch {
	base := model.Config{Dim: 128, Layers: 2, Heads: 4, Context: 64}
	mla := model.MLADims{KVRank: 64, RoPEDim: 16}
	// 8 routed experts of d_ff 128, top-2, plus 1 shared: 3 active SwiGLUs of width 128 = the dense
	// SwiGLU's 384, so the active parameters match the dense model's.
	mc := moe.Config{Hidden: 128, Experts: 8, TopK: 2, Shared: 1}
	dense := base
	mlaC := base
	mlaC.Attention, mlaC.MLA = model.MLA, mla
	moeC := base
	moeC.FFN, moeC.MoE = model.MoE, mc
	both := mlaC
	both.FFN, both.MoE = model.MoE, mc
	return []mlaArch{{"dense MHA", dense}, {"MLA", mlaC}, {"MHA+MoE", moeC}, {"MLA+MoE", both}}
}

func runMLAMoE(ctx *harness.Context) error {
	restore := model.UseFastGemm()
	defer restore()
	tiny := lmTinySteps > 0
	steps := ctx.Pick(50, 200, 1000)
	batch := ctx.Pick(8, 8, 16)
	maxBytes := int64(ctx.Pick(2_000_000, 4_000_000, 8_000_000))
	curveN, finalN := ctx.Pick(4, 8, 16), ctx.Pick(8, 32, 64)
	genTokens := ctx.Pick(256, 512, 1024)
	opts := []string{"adamw"}
	lrs := map[string]float64{"adamw": 3e-3, "muon": 0.02}
	if ctx.Size != harness.Quick {
		opts = append(opts, "muon")
	}
	if tiny {
		steps, batch, maxBytes, curveN, finalN, genTokens = lmTinySteps, 4, 300_000, 2, 2, 32
		opts = []string{"adamw", "muon"}
	}
	evalEvery := max(1, steps/10)
	warmup := max(1, steps/10)
	const auxLR, wd = 3e-3, 0.1

	corp, err := loadLMCorpus(maxBytes)
	if err != nil {
		return err
	}
	curveVal, err := model.EvalBatches(corp.Valid, batch, 64, curveN)
	if err != nil {
		return err
	}
	finalVal, err := model.EvalBatches(corp.Valid, batch, 64, finalN)
	if err != nil {
		return err
	}
	archs := mlaArchs()
	cfg := mlaMoECfg{Corpus: corp.Info.String(), Archs: map[string]string{}, Batch: batch, Steps: steps, Warmup: warmup, EvalEvery: evalEvery,
		CurveBatch: len(curveVal), FinalBatch: len(finalVal), Optimizers: map[string]float64{}, MuonAuxLR: auxLR, AdamWWD: wd, Seed: ctx.Seed, GenTokens: genTokens,
		MoE: "8 routed experts (SwiGLU d_ff 128), top-2, softmax router, 1 shared expert, auxiliary-loss-free bias balancing (moe default γ), no auxiliary loss, no capacity limit"}
	for _, a := range archs {
		cfg.Archs[a.Name] = fmt.Sprintf("%+v", a.Cfg)
	}
	for _, o := range opts {
		cfg.Optimizers[o] = lrs[o]
	}
	ctx.SetConfig(cfg)

	var runs []mlaRun
	for ai, a := range archs {
		for oi, o := range opts {
			c := a.Cfg
			c.Seed = ctx.Seed
			runs = append(runs, mlaRun{ai: ai, oi: oi, spec: lmRunSpec{Name: a.Name, Cfg: c, Batch: batch, Steps: steps, EvalEvery: evalEvery, Optimizer: o,
				LR: lrs[o], AuxLR: auxLR, WD: wd, Warmup: warmup, Seed: ctx.Seed, CurveVal: curveVal, FinalVal: finalVal, Tokens: corp.Train, KeepModel: true}})
		}
	}
	ctx.ParallelFor("train", len(runs), func(i int) { runs[i].res = runLM(&runs[i].spec) })
	// Generation one model at a time, so that the timings do not compete for the cores.
	prompt := finalVal[0].Inputs[:16]
	for i := range runs {
		r := &runs[i]
		if r.res.Model == nil {
			continue
		}
		if err := lmGenerate(r.res.Model, &r.res, prompt, genTokens); err != nil {
			r.res.Status = "generation failed: " + firstLine(err.Error())
		}
		r.res.Model.Close()
		r.res.Model = nil
		ctx.Progress("generate", i+1, len(runs))
	}

	w, err := ctx.CSV("metrics.csv", "arch", "optimizer", "step", "kind", "value")
	if err != nil {
		return err
	}
	for _, r := range runs {
		a, o := archs[r.ai].Name, opts[r.oi]
		kv := [][2]any{{"status", r.res.Status}, {"total_params", r.res.Total}, {"active_params", r.res.Active}, {"final_valid_loss", r.res.FinalValid},
			{"final_valid_ppl", math.Exp(r.res.FinalValid)}, {"kv_cache_bytes_per_token", r.res.CachePerToken}, {"kv_cache_bytes", r.res.CacheBytes},
			{"gen_tokens_per_sec", r.res.GenTokPerSec}, {"train_tokens_per_sec", r.res.TokensPerSec}, {"optimizer_state_bytes", r.res.StateBytes}, {"wall_seconds", r.res.Wall}}
		for li, cv := range r.res.MoECV {
			kv = append(kv, [2]any{fmt.Sprintf("moe_load_cv_layer%d", li), cv}, [2]any{fmt.Sprintf("moe_maxvio_layer%d", li), r.res.MoEMaxVio[li]})
		}
		for _, x := range kv {
			if err := w.Row(a, o, steps, x[0], x[1]); err != nil {
				return err
			}
		}
		for k := range r.res.EvalSteps {
			if err := w.Row(a, o, r.res.EvalSteps[k], "valid_loss", r.res.EvalLoss[k]); err != nil {
				return err
			}
		}
		for k, l := range r.res.TrainLoss {
			if err := w.Row(a, o, k+1, "train_loss", l); err != nil {
				return err
			}
		}
	}
	if err := w.Close(); err != nil {
		return err
	}
	var ss []harness.Series
	for i, r := range runs {
		if len(r.res.EvalSteps) > 0 {
			ss = append(ss, harness.Series{Name: archs[r.ai].Name + ", " + opts[r.oi], X: r.res.EvalSteps, Y: r.res.EvalLoss, Style: i, Line: true})
		}
	}
	if err := ctx.SavePlot("valid_loss.png", harness.LinePlot{Title: "Validation loss at similar active parameters", XLabel: "step", YLabel: "validation cross-entropy (nats/byte)", Series: ss}); err != nil {
		return err
	}

	find := func(ai int, o string) *lmRunResult {
		for i := range runs {
			if runs[i].ai == ai && opts[runs[i].oi] == o {
				return &runs[i].res
			}
		}
		return nil
	}
	base := find(0, "adamw")
	// The paper's arm is MLA+MoE+Muon; without a Muon run (quick size) MLA+MoE+AdamW stands in.
	armOpt := "adamw"
	if find(3, "muon") != nil {
		armOpt = "muon"
	}
	arm := find(3, armOpt)
	mem := 1 - arm.CachePerToken/base.CachePerToken
	speed := arm.GenTokPerSec / base.GenTokPerSec
	ppl := 1 - math.Exp(arm.FinalValid)/math.Exp(base.FinalValid)
	memOK := math.Abs(mem-0.68) <= 0.10
	speedOK := speed >= 2.5
	pplOK := ppl >= 0.06
	dirOK := mem > 0 && speed > 1.1 && ppl > 0.02 // beyond timing noise and a one-seed loss difference
	verdict := "not reproduced"
	switch {
	case base.Status != "ok" || arm.Status != "ok":
		verdict = "not reproduced"
	case memOK && speedOK && pplOK:
		verdict = "reproduced"
	case dirOK:
		verdict = "direction only"
	}

	var rep harness.Report
	rep.H1("MLA and MoE at similar active parameters (C2)")
	rep.P("**Paper's claim** (*Muon: Training and Trade-offs…*, as summarised in REFERENCE §4.1 C2; the paper's dimensions and baseline are not known):")
	rep.Quote("MLA+MoE+Muon gives 68% memory reduction, a 3.2× inference speed-up and 8–12% better perplexity.")
	rep.P("**Setup.** Corpus: %s (unigram cross-entropy %.3f nats/byte). Four byte-level decoders, 2 layers, d 128, 4 heads of 32, context 64, float32, untied head: "+
		"dense MHA + SwiGLU (d_ff 384); MLA (d_c 64, d_h^R 16, no query compression) + SwiGLU; MHA + MoE; MLA + MoE, where MoE is %s. "+
		"Each trained for %d steps of batch %d × 64 (same budget), warm-up %d steps then cosine to 0.1×peak, seed %d, with %s. "+
		"Validation loss every %d steps on %d batches; final loss on %d batches; generation: greedy, %d tokens after a 16-token prompt with the KV caches (model.Generate), median of 5 timings, one model at a time after all training.",
		corp.Info.String(), corp.Unigram, cfg.MoE, steps, batch, warmup, ctx.Seed, optDesc(opts, lrs, auxLR, wd), evalEvery, len(curveVal), len(finalVal), genTokens)
	rep.H2("Verdict")
	rep.P("**Verdict: %s** — MLA+MoE (%s) against dense MHA (AdamW): KV-cache memory per token %.0f%% less (paper: 68%%), generation %.2fx as fast (paper: 3.2x), perplexity %.1f%% %s (paper: 8–12%% better). Memory %s, speed %s, perplexity %s (thresholds: memory within 10 points of 68%%, speed ≥ 2.5x, perplexity ≥ 6%% better for reproduced; all three in the paper's direction, with speed > 1.1x and perplexity > 2%% better, for direction only).",
		verdict, armOpt, 100*mem, speed, 100*math.Abs(ppl), betterWorse(ppl), okStr(memOK), okStr(speedOK), okStr(pplOK))
	var same []string
	for _, o := range opts {
		d, a := find(0, o), find(3, o)
		if d != nil && a != nil {
			same = append(same, fmt.Sprintf("%s: perplexity %+.1f%% (negative = MLA+MoE better), generation %.2fx", o, 100*(math.Exp(a.FinalValid)/math.Exp(d.FinalValid)-1), a.GenTokPerSec/d.GenTokPerSec))
		}
	}
	rep.P("Same optimizer, MLA+MoE against dense MHA — %s. The optimizer's effect on the loss (dense MHA, Muon against AdamW) can be larger than the architecture's at this scale; see the table.", strings.Join(same, "; "))
	var rows [][]string
	for _, r := range runs {
		cv := "–"
		if len(r.res.MoECV) > 0 {
			var p []string
			for _, c := range r.res.MoECV {
				p = append(p, fmt.Sprintf("%.2f", c))
			}
			cv = strings.Join(p, " / ")
		}
		rows = append(rows, []string{archs[r.ai].Name, opts[r.oi], fmt.Sprint(r.res.Total), fmt.Sprint(r.res.Active), fmt.Sprintf("%.0f", r.res.CachePerToken),
			fmt.Sprintf("%.2f", float64(r.res.CachePerToken)*2048/1e6), fmtF(r.res.FinalValid), fmtF(math.Exp(r.res.FinalValid)),
			fmt.Sprintf("%.0f", r.res.GenTokPerSec), fmt.Sprintf("%.0f", r.res.TokensPerSec), cv, r.res.Status})
	}
	rep.Table([]string{"model", "optimizer", "total params", "active params", "KV bytes/token", "KV MB at 2048 tokens", "final valid loss", "perplexity (per byte)", "gen tokens/s", "train tokens/s", "expert-load CV (per layer)", "status"}, rows)
	rep.P("KV bytes per token are CacheBytes/positions from the decoder: MHA caches K and V, 2·L·n_h·d_h floats = 2·2·4·32·4 B = 2048 B; MLA caches the latent and the rotary key, L·(d_c + d_h^R) floats = 2·80·4 B = 640 B. " +
		"Expert-load CV is the coefficient of variation of the per-expert selection counts on 4 of the final validation batches (after training, with the learned balancing bias) (0 = perfectly balanced; moe.Stats).")
	rep.Image("validation loss curves", "valid_loss.png")
	rep.H2("What differs at this scale")
	rep.Bullets(
		"Memory: the paper's 68% compares whole-system memory of large models at long context; here only the KV cache is measured (weights, activations and optimizer state are not), and the cache ratio is fixed by the dimensions chosen: (d_c + d_h^R)/(2·n_h·d_h) = 80/256. MoE does not change the cache; it triples the FFN weights.",
		"Speed: at d = 128 and a few hundred cached positions, decoding is dominated by the per-token matrix–vector products and the 256-way head, not by reading the KV cache, so MLA's smaller cache buys little and its absorbed projections and the MoE routing cost extra work; the paper's 3.2x comes from memory-bandwidth-bound decoding of large models with long contexts and large batches.",
		"Perplexity: a few hundred steps of a 0.5 M-active-parameter model on bytes; MoE's extra capacity (about 3x the FFN parameters) needs more tokens than this to pay off, and the experts see a fraction of the tokens each. One seed: differences of a few hundredths of a nat are within seed noise.",
		"Muon: the stacked 3-D expert tensors go to Muon's AdamW side (only 2-D hidden matrices are orthogonalised), as in solvers.NewMuonWithAdamW's default routing; no LR grid per architecture.",
		"Not done here: peak inference/training memory (only the KV cache is measured), generation at batch 8 (batch 1 only), and the expert-balance comparison of C46 (auxiliary loss vs bias vs neither; only the default bias balancing runs). At the quick size the Muon arm is skipped and MLA+MoE+AdamW stands in for the paper's MLA+MoE+Muon.")
	rep.P("Files: metrics.csv (per run: parameters, cache, losses, throughput, expert-load CV and max violation, curves), valid_loss.png, run.json.")
	return ctx.WriteReport("report.md", &rep)
}

func optDesc(opts []string, lrs map[string]float64, aux, wd float64) string {
	var p []string
	for _, o := range opts {
		switch o {
		case "adamw":
			p = append(p, fmt.Sprintf("AdamW (peak lr %g, betas (0.9, 0.95), wd %g)", lrs[o], wd))
		case "muon":
			p = append(p, fmt.Sprintf("Muon+AdamW (Muon peak lr %g on hidden 2-D matrices, AdamW side lr %g)", lrs[o], aux))
		}
	}
	return strings.Join(p, " and ")
}

func betterWorse(x float64) string {
	if x >= 0 {
		return "better"
	}
	return "worse"
}

func okStr(b bool) string {
	if b {
		return "matches"
	}
	return "does not match"
}
