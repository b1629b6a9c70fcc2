package main

// batch-scaling (C28): the square-root scaling rule (SRR) of Malladi et al., "On the SDEs and Scaling
// Rules for Adaptive Gradient Algorithms" (NeurIPS 2022), for Adam and RMSprop, against linear LR scaling
// and no scaling, with SGD's linear rule as the control. Every run sees the same number of epochs; the
// training loss is measured on a fixed subset of the training set on a common grid of epochs and compared
// with the base-batch curve.

import (
	"fmt"
	"math"
	"sort"

	"github.com/gradlab/gradlab/experiments/harness"
	"github.com/gradlab/gradlab/solvers"
)

const batchScalingClaim = "On the SDEs and Scaling Rules for Adaptive Gradient Algorithms (C28): the square-root rule keeps Adam and RMSprop on the same trajectory when the batch size changes."

func init() {
	harness.Register(&harness.Experiment{Name: "batch-scaling", Claim: batchScalingClaim, Default: false, Run: runBatchScaling})
}

// bsHyper is one optimizer configuration of the batch-scaling experiment. Beta2 is RMSprop's alpha; Beta1
// is unused for RMSprop and SGD.
type bsHyper struct {
	Kind  string  `json:"kind"`
	LR    float64 `json:"lr"`
	Beta1 float64 `json:"beta1,omitempty"`
	Beta2 float64 `json:"beta2_or_alpha,omitempty"`
	Eps   float64 `json:"eps,omitempty"`
}

// bsScale applies a batch-size rule for a batch κ times larger:
//   - "srr" (Malladi et al., Definition of the square-root scaling rule; REFERENCE §1.13):
//     η → √κ·η, 1−β1 → κ(1−β1), 1−β2 → κ(1−β2), ε → ε/√κ (RMSprop: its α is β2);
//   - "linear": η → κ·η, the rest unchanged;
//   - "none": unchanged.
//
// It returns an error if a scaled β falls outside [0, 1) (the rule needs 1−β ≤ 1/κ at the base batch).
func bsScale(h bsHyper, rule string, kappa float64) (bsHyper, error) {
	out := h
	switch rule {
	case "none", "base":
	case "linear":
		out.LR = kappa * h.LR
	case "srr":
		out.LR = math.Sqrt(kappa) * h.LR
		if h.Kind == "adam" {
			out.Beta1 = 1 - kappa*(1-h.Beta1)
		}
		if h.Kind == "adam" || h.Kind == "rmsprop" {
			out.Beta2 = 1 - kappa*(1-h.Beta2)
			out.Eps = h.Eps / math.Sqrt(kappa)
		}
		if out.Beta1 < 0 || out.Beta2 < 0 {
			return out, fmt.Errorf("srr at κ=%g gives a negative β (base β1 %g, β2 %g)", kappa, h.Beta1, h.Beta2)
		}
	default:
		return out, fmt.Errorf("unknown rule %q", rule)
	}
	return out, nil
}

func (h bsHyper) solver() (solvers.Solver, error) {
	opts := []solvers.Option{solvers.Set("lr", h.LR)}
	switch h.Kind {
	case "adam":
		opts = append(opts, solvers.Set("beta1", h.Beta1), solvers.Set("beta2", h.Beta2), solvers.Set("eps", h.Eps))
	case "rmsprop":
		opts = append(opts, solvers.Set("alpha", h.Beta2), solvers.Set("eps", h.Eps))
	}
	return solvers.New(h.Kind, opts...)
}

func (h bsHyper) String() string {
	switch h.Kind {
	case "adam":
		return fmt.Sprintf("lr %s, β1 %s, β2 %s, ε %s", harness.F(h.LR), harness.F(h.Beta1), harness.F(h.Beta2), harness.F(h.Eps))
	case "rmsprop":
		return fmt.Sprintf("lr %s, α %s, ε %s", harness.F(h.LR), harness.F(h.Beta2), harness.F(h.Eps))
	}
	return "lr " + harness.F(h.LR)
}

type bsArm struct {
	opt   int // index into the base configurations
	rule  string
	kappa int
	hyper bsHyper
	err   error
}

type bsRun struct {
	arm, seed int
	status    string
	curve     []float64 // training loss (eval subset) at the epoch grid, index 0 = start
	testAcc   float64
	finalLoss float64
	steps     int
}

type bsConfig struct {
	Task          string    `json:"task"`
	Model         string    `json:"model"`
	BaseBatch     int       `json:"base_batch"`
	Kappas        []int     `json:"kappas"`
	Epochs        int       `json:"epochs"`
	TrainN        int       `json:"train_examples"`
	EvalN         int       `json:"eval_subset"`
	PointsPerEpo  int       `json:"grid_points_per_epoch"`
	Seeds         []int64   `json:"seeds"`
	Base          []bsHyper `json:"base_hyperparameters"`
	Arms          []string  `json:"arms"`
	DistanceNotes string    `json:"distance"`
}

func runBatchScaling(ctx *harness.Context) error {
	const baseBatch = 16
	kappas := []int{4, 16}
	epochs := ctx.Pick(1, 3, 6)
	trainN := ctx.Pick(1024, 4096, 8192)
	perEpoch := ctx.Pick(4, 8, 8)
	nSeeds := ctx.Pick(1, 2, 3)
	var seeds []int64
	for i := 0; i < nSeeds; i++ {
		seeds = append(seeds, ctx.Seed+int64(i))
	}
	task, err := loadClsTask(trainN, ctx.Pick(500, 2000, 10000), ctx.Seed, true)
	if err != nil {
		return err
	}
	trainN = task.nTrain()
	evalN := min(trainN, 2048)
	hidden := 32
	bases := []bsHyper{
		{Kind: "adam", LR: 1e-3, Beta1: 0.99, Beta2: 0.999, Eps: 1e-8},
		{Kind: "rmsprop", LR: 1e-3, Beta2: 0.999, Eps: 1e-8},
		{Kind: "sgd", LR: 0.02},
	}
	var arms []bsArm
	for oi, b := range bases {
		arms = append(arms, bsArm{opt: oi, rule: "base", kappa: 1, hyper: b})
		rules := []string{"srr", "linear", "none"}
		if b.Kind == "sgd" {
			rules = []string{"linear", "none"}
		}
		for _, k := range kappas {
			for _, r := range rules {
				h, err := bsScale(b, r, float64(k))
				arms = append(arms, bsArm{opt: oi, rule: r, kappa: k, hyper: h, err: err})
			}
		}
	}
	cfg := bsConfig{Task: task.Desc, Model: fmt.Sprintf("MLP %d→%d→%d ReLU, float32", task.Dim, hidden, task.Classes),
		BaseBatch: baseBatch, Kappas: kappas, Epochs: epochs, TrainN: trainN, EvalN: evalN, PointsPerEpo: perEpoch, Seeds: seeds, Base: bases,
		DistanceNotes: "mean over the epoch grid (start excluded) of |L_run(e) − L̄_base(e)|, L = mean cross-entropy on the first eval_subset training examples, L̄_base = the base-batch curve averaged over seeds"}
	for _, a := range arms {
		cfg.Arms = append(cfg.Arms, fmt.Sprintf("%s %s κ=%d: %s", a.hyper.Kind, a.rule, a.kappa, a.hyper))
	}
	ctx.SetConfig(cfg)

	nPts := epochs*perEpoch + 1
	runs := make([]bsRun, len(arms)*len(seeds))
	for ai := range arms {
		for si := range seeds {
			runs[ai*len(seeds)+si] = bsRun{arm: ai, seed: si}
		}
	}
	nParams := 0
	ctx.ParallelFor("runs", len(runs), func(i int) {
		r := &runs[i]
		a := &arms[r.arm]
		r.curve = make([]float64, nPts)
		for k := range r.curve {
			r.curve[k] = math.NaN()
		}
		r.testAcc, r.finalLoss = math.NaN(), math.NaN()
		if a.err != nil {
			r.status = "not run: " + a.err.Error()
			return
		}
		s, err := a.hyper.solver()
		if err != nil {
			r.status = "construction failed: " + firstLine(err.Error())
			return
		}
		B := baseBatch * a.kappa
		p, err := newMLPProblem(task, mlpSpec{Hidden: []int{hidden}, Batch: B}, seeds[r.seed])
		if err != nil {
			r.status = "model: " + err.Error()
			return
		}
		defer p.Close()
		if i == 0 {
			nParams = p.nParams
		}
		evalX, evalY := task.TrainX[:evalN*task.Dim], task.TrainY[:evalN]
		r.curve[0], _ = p.forward(evalX, evalY)
		totalSteps := epochs * trainN / B
		r.status = "ok"
		vgs := p.Params()
		next := 1
		for t := 1; t <= totalSteps; t++ {
			p.NextBatch()
			loss, err := p.Grad()
			if err == nil {
				err = s.Step(vgs)
			}
			if err != nil {
				r.status = fmt.Sprintf("error at step %d: %s", t, firstLine(err.Error()))
				return
			}
			if math.IsNaN(loss) || math.IsInf(loss, 0) || loss > 1e3 {
				r.status = fmt.Sprintf("diverged at step %d (loss %.3g)", t, loss)
				return
			}
			r.steps = t
			// Grid point k is at k/perEpoch epochs, i.e. after round(k·trainN/(perEpoch·B)) steps.
			for next < nPts && t == int(math.Round(float64(next)*float64(trainN)/float64(perEpoch*B))) {
				r.curve[next], _ = p.forward(evalX, evalY)
				next++
			}
		}
		r.finalLoss = r.curve[nPts-1]
		_, r.testAcc = p.forward(task.TestX, task.TestY)
	})

	// Base curves (seed mean) and distances.
	baseMean := make([][]float64, len(bases))
	for ai, a := range arms {
		if a.rule != "base" {
			continue
		}
		m := make([]float64, nPts)
		for k := range m {
			var xs []float64
			for si := range seeds {
				xs = append(xs, runs[ai*len(seeds)+si].curve[k])
			}
			m[k], _, _ = meanStd(xs)
		}
		baseMean[a.opt] = m
	}
	dist := func(c, ref []float64) float64 {
		s, n := 0.0, 0
		for k := 1; k < len(c); k++ {
			if math.IsNaN(c[k]) || math.IsNaN(ref[k]) {
				return math.NaN()
			}
			s += math.Abs(c[k] - ref[k])
			n++
		}
		if n == 0 {
			return math.NaN()
		}
		return s / float64(n)
	}
	runDist := make([]float64, len(runs))
	for i := range runs {
		runDist[i] = dist(runs[i].curve, baseMean[arms[runs[i].arm].opt])
	}
	// Noise floor: each base seed against the mean of the other base seeds (needs ≥ 2 seeds).
	floor := make([]float64, len(bases))
	for ai, a := range arms {
		if a.rule != "base" {
			continue
		}
		floor[a.opt] = math.NaN()
		if len(seeds) < 2 {
			continue
		}
		var ds []float64
		for si := range seeds {
			other := make([]float64, nPts)
			for k := range other {
				var xs []float64
				for sj := range seeds {
					if sj != si {
						xs = append(xs, runs[ai*len(seeds)+sj].curve[k])
					}
				}
				other[k], _, _ = meanStd(xs)
			}
			ds = append(ds, dist(runs[ai*len(seeds)+si].curve, other))
		}
		floor[a.opt], _, _ = meanStd(ds)
	}

	// Files.
	w, err := ctx.CSV("metrics.csv", "optimizer", "rule", "kappa", "batch", "lr", "beta1", "beta2_or_alpha", "eps", "seed", "steps", "status", "final_train_loss", "test_acc", "distance_to_base")
	if err != nil {
		return err
	}
	for i := range runs {
		r := &runs[i]
		a := &arms[r.arm]
		h := a.hyper
		if err := w.Row(h.Kind, a.rule, a.kappa, baseBatch*a.kappa, h.LR, h.Beta1, h.Beta2, h.Eps, seeds[r.seed], r.steps, r.status, r.finalLoss, r.testAcc, runDist[i]); err != nil {
			w.Close()
			return err
		}
	}
	if err := w.Close(); err != nil {
		return err
	}
	cw, err := ctx.CSV("curves.csv", "optimizer", "rule", "kappa", "seed", "epoch", "train_loss")
	if err != nil {
		return err
	}
	for i := range runs {
		r := &runs[i]
		a := &arms[r.arm]
		for k, v := range r.curve {
			if err := cw.Row(a.hyper.Kind, a.rule, a.kappa, seeds[r.seed], float64(k)/float64(perEpoch), v); err != nil {
				cw.Close()
				return err
			}
		}
	}
	if err := cw.Close(); err != nil {
		return err
	}

	armVals := func(ai int, f func(i int) float64) []float64 {
		var out []float64
		for si := range seeds {
			out = append(out, f(ai*len(seeds)+si))
		}
		return out
	}
	epochsX := make([]float64, nPts)
	for k := range epochsX {
		epochsX[k] = float64(k) / float64(perEpoch)
	}
	ruleStyle := map[string]int{"srr": 0, "linear": 1, "none": 2}
	for oi, b := range bases {
		var ss []harness.Series
		for ai, a := range arms {
			if a.opt != oi {
				continue
			}
			ys := make([]float64, nPts)
			for k := range ys {
				ys[k], _, _ = meanStd(armVals(ai, func(i int) float64 { return runs[i].curve[k] }))
			}
			if a.rule == "base" {
				ss = append(ss, harness.Series{Name: fmt.Sprintf("base batch %d", baseBatch), X: epochsX, Y: ys, Black: true, Line: true})
				continue
			}
			st := ruleStyle[a.rule]
			if a.kappa == kappas[len(kappas)-1] {
				st += 4
			}
			ss = append(ss, harness.Series{Name: fmt.Sprintf("%s, κ=%d (batch %d)", a.rule, a.kappa, baseBatch*a.kappa), X: epochsX, Y: ys, Style: st, Line: true})
		}
		if err := ctx.SavePlot(fmt.Sprintf("curves_%s.png", b.Kind), harness.LinePlot{Title: fmt.Sprintf("%s: training loss against epochs (mean over %d seeds)", b.Kind, len(seeds)),
			XLabel: "epochs", YLabel: "training loss (eval subset)", LogY: true, Series: ss}); err != nil {
			return err
		}
	}
	// Distance against κ per optimizer and rule.
	var ds []harness.Series
	for oi, b := range bases {
		byRule := map[string][2][]float64{}
		for ai, a := range arms {
			if a.opt != oi || a.rule == "base" {
				continue
			}
			m, _, n := meanStd(armVals(ai, func(i int) float64 { return runDist[i] }))
			if n == 0 {
				continue
			}
			v := byRule[a.rule]
			v[0], v[1] = append(v[0], math.Log2(float64(a.kappa))), append(v[1], m)
			byRule[a.rule] = v
		}
		var rules []string
		for r := range byRule {
			rules = append(rules, r)
		}
		sort.Strings(rules)
		for _, r := range rules {
			ds = append(ds, harness.Series{Name: b.Kind + " " + r, X: byRule[r][0], Y: byRule[r][1], Style: oi*3 + ruleStyle[r], Line: true, Points: true})
		}
	}
	if err := ctx.SavePlot("distance.png", harness.LinePlot{Title: "Distance to the base-batch curve", XLabel: "log2 κ (batch = 16κ)", YLabel: "mean |L − L_base| over the epoch grid", LogY: true, Series: ds}); err != nil {
		return err
	}

	// Table and verdict.
	var rows [][]string
	srrWins, srrCases := 0, 0
	var srrNotes []string
	sgdLinearWins, sgdCases := 0, 0
	meanDist := func(oi int, rule string, k int) (float64, []float64) {
		for ai, a := range arms {
			if a.opt == oi && a.rule == rule && a.kappa == k {
				xs := armVals(ai, func(i int) float64 { return runDist[i] })
				m, _, n := meanStd(xs)
				if n < len(xs) {
					m = math.NaN() // a diverged or skipped seed: no distance
				}
				return m, xs
			}
		}
		return math.NaN(), nil
	}
	better := func(a, b float64) bool { return !math.IsNaN(a) && (math.IsNaN(b) || a < b) }
	for oi, b := range bases {
		for ai, a := range arms {
			if a.opt != oi {
				continue
			}
			statusNote := ""
			nok := 0
			for si := range seeds {
				if runs[ai*len(seeds)+si].status == "ok" {
					nok++
				} else if statusNote == "" {
					statusNote = runs[ai*len(seeds)+si].status
				}
			}
			if statusNote != "" {
				statusNote = fmt.Sprintf(" (%d/%d ok: %s)", nok, len(seeds), statusNote)
			}
			d := "(reference)"
			if a.rule != "base" {
				d = pm(armVals(ai, func(i int) float64 { return runDist[i] }))
			}
			rows = append(rows, []string{b.Kind, a.rule, fmt.Sprint(a.kappa), fmt.Sprint(baseBatch * a.kappa), a.hyper.String(),
				d + statusNote, pm(armVals(ai, func(i int) float64 { return runs[i].finalLoss })), pm(armVals(ai, func(i int) float64 { return runs[i].testAcc }))})
		}
		for _, k := range kappas {
			if b.Kind == "sgd" {
				lin, _ := meanDist(oi, "linear", k)
				none, _ := meanDist(oi, "none", k)
				sgdCases++
				if better(lin, none) {
					sgdLinearWins++
				}
				continue
			}
			srr, _ := meanDist(oi, "srr", k)
			lin, _ := meanDist(oi, "linear", k)
			none, _ := meanDist(oi, "none", k)
			srrCases++
			win := better(srr, lin) && better(srr, none)
			if win {
				srrWins++
			}
			srrNotes = append(srrNotes, fmt.Sprintf("%s κ=%d: SRR %s, linear %s, none %s (floor %s)", b.Kind, k, fmtF(srr), fmtF(lin), fmtF(none), fmtF(floor[oi])))
		}
	}
	verdict := "not reproduced"
	switch {
	case srrWins == srrCases:
		verdict = "reproduced"
	case srrWins*2 >= srrCases && srrWins > 0:
		verdict = "direction only"
	}
	var rep harness.Report
	rep.H1("Square-root scaling rule for Adam and RMSprop (C28)")
	rep.P("**Paper's claim** (Malladi, Lyu, Panigrahi & Arora, *On the SDEs and Scaling Rules for Adaptive Gradient Algorithms*, NeurIPS 2022; REFERENCE.md §4.2, C28):")
	rep.Quote("the square-root rule keeps Adam and RMSprop on the same trajectory when the batch size changes.")
	rep.P("The rule (REFERENCE §1.13, the paper's square-root scaling rule): when the batch grows from B to κB, set η → √κ·η, 1−β1 → κ(1−β1), 1−β2 → κ(1−β2), ε → ε/√κ (RMSprop: its α plays β2), and keep the number of epochs. SGD's linear rule (η → κη) is the control.")
	rep.H2("Verdict")
	rep.P("**Verdict: %s** — SRR is closer to the base-batch curve than both linear scaling and no scaling in %d of %d (optimizer, κ) cases; SGD's linear rule beats no scaling in %d of %d cases.", verdict, srrWins, srrCases, sgdLinearWins, sgdCases)
	rep.Bullets(srrNotes...)
	rep.P("Distances are %s; the *floor* is the same distance for a base-batch seed against the mean of the other base seeds (the seed-to-seed noise of the reference itself; – with one seed). A rule that tracks the base trajectory should come close to that floor.", cfg.DistanceNotes)
	rep.H2("Setup")
	rep.P("Task: %s. Model: %s (%d parameters), the same initial weights for every arm of one seed (batch order differs with the batch size). Base batch %d; κ ∈ %v (batch %d and %d); %d epochs for every arm (so κ times fewer steps at batch 16κ). The loss curve is the cross-entropy on the first %d training examples at %d points per epoch. Seeds %v.",
		task.Desc, cfg.Model, nParams, baseBatch, kappas, baseBatch*kappas[0], baseBatch*kappas[1], epochs, evalN, perEpoch, seeds)
	rep.P("Base hyperparameters: Adam %s; RMSprop %s (no momentum); SGD %s (no momentum). Adam's β1 is 0.99 rather than the usual 0.9 because the rule needs 1−β1 ≤ 1/κ at the base batch: with β1 = 0.9, κ = 16 would give β1 = −0.6. The LRs are not tuned per arm: the question is whether a rule transfers the base run, not which arm reaches the lowest loss.",
		bases[0], bases[1], bases[2])
	rep.Table([]string{"optimizer", "rule", "κ", "batch", "hyperparameters", "distance to base (mean ± sd)", "final train loss", "test acc"}, rows)
	for _, b := range bases {
		rep.Image(b.Kind+" curves", "curves_"+b.Kind+".png")
	}
	rep.Image("distance to the base curve", "distance.png")
	rep.H2("How this differs from the paper")
	rep.P("The paper validates the rule on ResNets (CIFAR-10), ImageNet and language models with batches up to thousands and long runs; here a %d-parameter MLP trains for %d epochs at batches 16–%d on CPU. The SDE argument holds for small learning rates and below a noise-dominated critical batch size; a small model at large κ (batch 256 on %d examples means only %d steps per epoch) is where the approximation is expected to break, so the κ = 16 row is the harder test.",
		nParams, epochs, baseBatch*kappas[len(kappas)-1], trainN, trainN/(baseBatch*kappas[len(kappas)-1]))
	rep.P("Files: metrics.csv (every run: hyperparameters, status, final loss, test accuracy, distance), curves.csv (every run's loss at every grid point), run.json.")
	return ctx.WriteReport("report.md", &rep)
}
