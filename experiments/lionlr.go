package main

import (
	"fmt"
	"math"

	"github.com/gradlab/gradlab/experiments/harness"
)

const lionClaim = "Symbolic Discovery of Optimization Algorithms (C7): Lion needs a 3–10x smaller learning rate than AdamW, its gain over AdamW grows with the batch size, and it stores only the momentum (half of Adam's state)."

func init() {
	harness.Register(&harness.Experiment{Name: "lion-lr", Claim: lionClaim, Default: true, Run: runLionLR})
}

type lionConfig struct {
	Task    string               `json:"task"`
	Model   string               `json:"model"`
	Samples int                  `json:"samples_per_run"`
	Batches []int                `json:"batches"`
	Seeds   []int64              `json:"seeds"`
	Grids   map[string][]float64 `json:"lr_grids"`
	Select  string               `json:"selection"`
}

type lionRun struct {
	oi, bi, li, si int
	lr             float64
	built          harness.Built
	res            trainResult
}

func runLionLR(ctx *harness.Context) error {
	samples := 256 * ctx.Pick(30, 120, 400)
	nSeeds := ctx.Pick(1, 2, 3)
	var seeds []int64
	for i := 0; i < nSeeds; i++ {
		seeds = append(seeds, ctx.Seed+int64(i))
	}
	task, err := loadClsTask(ctx.Pick(3000, 10000, 60000), ctx.Pick(1000, 2000, 10000), ctx.Seed, true)
	if err != nil {
		return err
	}
	batches := []int{16, 256}
	opts := []harness.Variant{{Name: "adamw", Kind: "adamw"}, {Name: "lion", Kind: "lion"}}
	grids := [][]float64{
		{1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2},
		{1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3},
	}
	cfg := lionConfig{Task: task.Desc, Model: fmt.Sprintf("MLP %d→32→%d ReLU, float32", task.Dim, task.Classes), Samples: samples,
		Batches: batches, Seeds: seeds, Grids: map[string][]float64{"adamw": grids[0], "lion": grids[1]},
		Select: "per optimizer and batch size, the LR with the lowest mean final training loss over seeds"}
	ctx.SetConfig(cfg)
	nl := len(grids[0])
	idx := func(oi, bi, li, si int) int { return ((oi*len(batches)+bi)*nl+li)*len(seeds) + si }
	runs := make([]lionRun, len(opts)*len(batches)*nl*len(seeds))
	for oi := range opts {
		for bi := range batches {
			for li, lr := range grids[oi] {
				for si := range seeds {
					runs[idx(oi, bi, li, si)] = lionRun{oi: oi, bi: bi, li: li, si: si, lr: lr}
				}
			}
		}
	}
	nParams := 0
	ctx.ParallelFor("runs", len(runs), func(i int) {
		r := &runs[i]
		fail := func(msg string) {
			r.res = trainResult{Status: msg, FinalTrain: math.NaN(), FinalVal: math.NaN(), FinalAcc: math.NaN()}
		}
		s, b, err := harness.Build(opts[r.oi], []harness.Setting{{Key: "lr", Value: r.lr}})
		r.built = b
		if err != nil {
			fail("construction failed: " + firstLine(err.Error()))
			return
		}
		B := batches[r.bi]
		p, err := newMLPProblem(task, mlpSpec{Hidden: []int{32}, Batch: B, EvalTrain: 5000}, seeds[r.si])
		if err != nil {
			fail("model: " + err.Error())
			return
		}
		defer p.Close()
		if i == 0 {
			nParams = p.nParams
		}
		steps := samples / B
		r.res = train(p, s, trainOpts{Steps: steps, LogEvery: max(1, steps/40)})
	})

	w, err := ctx.CSV("metrics.csv", "optimizer", "batch", "steps", "lr", "seed", "status", "final_train_loss", "test_loss", "test_acc", "state_bytes")
	if err != nil {
		return err
	}
	cw, err := ctx.CSV("curves.csv", "optimizer", "batch", "lr", "seed", "step", "samples", "minibatch_loss")
	if err != nil {
		w.Close()
		return err
	}
	for i := range runs {
		r := &runs[i]
		B := batches[r.bi]
		if err := w.Row(opts[r.oi].Name, B, samples/B, r.lr, seeds[r.si], r.res.Status, r.res.FinalTrain, r.res.FinalVal, r.res.FinalAcc, r.res.StateBytes); err != nil {
			return err
		}
		for k := range r.res.Curve {
			if err := cw.Row(opts[r.oi].Name, B, r.lr, seeds[r.si], r.res.CurveStep[k], r.res.CurveStep[k]*float64(B), r.res.Curve[k]); err != nil {
				return err
			}
		}
	}
	if err := w.Close(); err != nil {
		return err
	}
	if err := cw.Close(); err != nil {
		return err
	}

	get := func(oi, bi, li int, f func(*trainResult) float64) []float64 {
		var out []float64
		for si := range seeds {
			out = append(out, f(&runs[idx(oi, bi, li, si)].res))
		}
		return out
	}
	trainL := func(r *trainResult) float64 { return r.FinalTrain }
	acc := func(r *trainResult) float64 { return r.FinalAcc }
	best := make([][]int, len(opts))
	for oi := range opts {
		best[oi] = make([]int, len(batches))
		for bi := range batches {
			bm, bl := math.Inf(1), -1
			for li := 0; li < nl; li++ {
				m, _, n := meanStd(get(oi, bi, li, trainL))
				if n == len(seeds) && m < bm {
					bm, bl = m, li
				}
			}
			best[oi][bi] = bl
		}
	}
	var state [2]int64
	for oi := range opts {
		for i := range runs {
			if runs[i].oi == oi && runs[i].res.StateBytes > 0 {
				state[oi] = runs[i].res.StateBytes
				break
			}
		}
	}

	// Plot: final train loss against LR, per optimizer × batch.
	var ss []harness.Series
	for oi, o := range opts {
		for bi, B := range batches {
			var xs, ys []float64
			for li, lr := range grids[oi] {
				if m, _, n := meanStd(get(oi, bi, li, trainL)); n > 0 {
					xs, ys = append(xs, math.Log10(lr)), append(ys, m)
				}
			}
			ss = append(ss, harness.Series{Name: fmt.Sprintf("%s, batch %d", o.Name, B), X: xs, Y: ys, Style: oi*2 + bi, Line: true, Points: true})
		}
	}
	if err := ctx.SavePlot("loss_vs_lr.png", harness.LinePlot{Title: fmt.Sprintf("Final training loss after %d samples", samples), XLabel: "log10 LR", YLabel: "final training loss (mean over seeds; diverged runs omitted)", LogY: true, Series: ss}); err != nil {
		return err
	}
	var cs []harness.Series
	for oi, o := range opts {
		for bi, B := range batches {
			li := best[oi][bi]
			if li < 0 {
				continue
			}
			r := &runs[idx(oi, bi, li, 0)]
			var xs []float64
			for _, s := range r.res.CurveStep {
				xs = append(xs, s*float64(B))
			}
			cs = append(cs, harness.Series{Name: fmt.Sprintf("%s, batch %d, lr %s", o.Name, B, harness.F(r.lr)), X: xs, Y: r.res.Curve, Style: oi*2 + bi, Line: true})
		}
	}
	if err := ctx.SavePlot("curves.png", harness.LinePlot{Title: "Loss curves at the best LR (seed 1)", XLabel: "samples seen", YLabel: "minibatch training loss (interval mean)", LogY: true, Series: cs}); err != nil {
		return err
	}

	// Numbers for the verdict.
	var rows [][]string
	var ratios, gaps []float64
	var gapStr []string
	ratioOK, gapGrows := true, false
	for bi, B := range batches {
		la, ll := best[0][bi], best[1][bi]
		if la < 0 || ll < 0 {
			rows = append(rows, []string{fmt.Sprint(B), "–", "–", "–", "–", "–", "–"})
			ratioOK = false
			gaps = append(gaps, math.NaN())
			continue
		}
		ra := get(0, bi, la, trainL)
		rl := get(1, bi, ll, trainL)
		ratio := grids[0][la] / grids[1][ll]
		ratios = append(ratios, ratio)
		edge := ""
		if la == 0 || la == nl-1 || ll == 0 || ll == nl-1 {
			edge = " (a best LR is at its grid's edge)"
		}
		if ratio < 3*0.99 || ratio > 10*1.01 { // grid points are products of powers of √10
			ratioOK = false
		}
		ma, _, _ := meanStd(ra)
		ml, _, _ := meanStd(rl)
		gaps = append(gaps, ma-ml)
		gapStr = append(gapStr, fmt.Sprintf("batch %d: %+.4f", B, ma-ml))
		rows = append(rows, []string{fmt.Sprint(B), fmt.Sprint(samples / B), harness.F(grids[0][la]) + " / " + harness.F(grids[1][ll]), fmt.Sprintf("%.3g%s", ratio, edge),
			pm(ra) + " / " + pm(rl), fmt.Sprintf("%+.4f", ma-ml), pm(get(0, bi, la, acc)) + " / " + pm(get(1, bi, ll, acc))})
	}
	if len(gaps) == 2 && !math.IsNaN(gaps[0]) && !math.IsNaN(gaps[1]) {
		gapGrows = gaps[1] > gaps[0]
	}
	halfState := state[0] > 0 && state[1]*2 == state[0]
	nOK := 0
	for _, b := range []bool{ratioOK, gapGrows, halfState} {
		if b {
			nOK++
		}
	}
	verdict := "not reproduced"
	switch {
	case nOK == 3:
		verdict = "reproduced"
	case nOK > 0:
		verdict = "partly reproduced"
	}

	var rep harness.Report
	rep.H1("Lion's learning rate, batch size and state (C7)")
	rep.P("**Paper's claim** (REFERENCE.md §4.1, C7):")
	rep.Quote("Symbolic Discovery of Optimization Algorithms: Lion needs a smaller LR than Adam (3–10x), its gain grows with batch size, and it stores only momentum.")
	rep.P("**Setup.** Task: %s. Model: %s (%d parameters). Same budget in samples for both batch sizes: %d samples (batch 16: %d steps; batch 256: %d steps). "+
		"LR grids (6 points each, log-spaced ×√10): AdamW %v, Lion %v. Other hyperparameters at gradlab's defaults (AdamW: β (0.9, 0.999), weight decay 0.01; Lion: its defaults, recorded in run.json via metrics). Seeds %v. %s. "+
		"The paper's LM/ImageNet scale is replaced by this MLP (REFERENCE §4); the LM arm of C7 is not run.",
		task.Desc, cfg.Model, nParams, samples, samples/16, samples/256, grids[0], grids[1], seeds, cfg.Select)
	rep.H2("Verdict")
	rep.P("**Verdict:** %s — best-LR ratio AdamW/Lion at batch 16, 256: %s (claim 3–10: %s); final-loss gain of Lion (AdamW − Lion, positive = Lion better) %s (grows with batch: %s); optimizer state %d bytes (Lion) vs %d bytes (AdamW), ratio %.2f (half: %s).",
		verdict, fmtList(ratios), yesNo(ratioOK), joinOr(gapStr, "–"), yesNo(gapGrows), state[1], state[0], float64(state[1])/math.Max(1, float64(state[0])), yesNo(halfState))
	rep.P("The LR grids have a factor √10 ≈ 3.16 between points, so the ratio is resolved only to that factor; the ratio of best LRs is a ratio of grid points.")
	rep.Table([]string{"batch", "steps", "best lr AdamW / Lion", "ratio", "final train loss AdamW / Lion", "gap (AdamW − Lion)", "test acc AdamW / Lion"}, rows)
	rep.Image("final loss against LR", "loss_vs_lr.png")
	rep.Image("loss curves at the best LR", "curves.png")
	rep.P("State bytes are StateBytes() after training: AdamW keeps exp_avg and exp_avg_sq (2 float32 per parameter), Lion only the momentum (1 per parameter).")
	rep.P("Files: metrics.csv (every run), curves.csv, run.json.")
	return ctx.WriteReport("report.md", &rep)
}

func fmtList(xs []float64) string {
	if len(xs) == 0 {
		return "–"
	}
	s := ""
	for i, x := range xs {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%.3g", x)
	}
	return s
}

func joinOr(xs []string, empty string) string {
	if len(xs) == 0 {
		return empty
	}
	out := xs[0]
	for _, x := range xs[1:] {
		out += "; " + x
	}
	return out
}
