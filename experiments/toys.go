package main

import (
	"fmt"
	"math"
	"strings"

	"github.com/gradlab/gradlab/experiments/harness"
)

const adaBeliefClaim = "AdaBelief paper (C6): AdaBelief \"converges fast like adaptive methods\" and is fastest to the optimum on toy problems (|x|+|y|, |x+y|+|x−y|/10, (x+y)²+(x−y)²/10, Beale, Rosenbrock), compared with Adam and SGDM."

func init() {
	harness.Register(&harness.Experiment{
		Name:    "adabelief-toys",
		Claim:   adaBeliefClaim,
		Default: true,
		Run:     runToys,
	})
}

// toysConfig is the recorded configuration of adabelief-toys.
type toysConfig struct {
	Functions  []string        `json:"functions"`
	Starts     [][2]float64    `json:"starts"`
	LRs        []float64       `json:"lr_grid"`
	Iterations int             `json:"iterations"`
	Target     string          `json:"target"`
	Tuning     string          `json:"tuning"`
	Optimizers []harness.Built `json:"optimizers"`
	Skipped    []skipNote      `json:"skipped,omitempty"`
	Subgrad    string          `json:"subgradient"`
}

func runToys(ctx *harness.Context) error {
	toys := adaBeliefToys()
	spec := gridSpec{
		exp:    ctx.Name,
		funcs:  toys,
		starts: [][2]float64{{-2, 2}, {1, -3}},
		lrs:    []float64{1e-3, 1e-2, 1e-1},
		steps:  ctx.Pick(300, 2000, 10000),
		target: 1e-2,
	}
	spec.variants = withFlagOff(ctx.Variants(), "adabelief", "rectify", "adabelief-norect")
	cfg := toysConfig{Starts: spec.starts, LRs: spec.lrs, Iterations: spec.steps, Target: "f − f* < 1e-2",
		Tuning:  "per optimizer, function and start: the lr reaching the target with the fewest gradient evaluations, else the lowest final f",
		Subgrad: "sign, with sign(0) = 0"}
	for _, t := range toys {
		cfg.Functions = append(cfg.Functions, t.obj.Name+": "+t.desc)
	}
	g, err := runGrid(ctx, spec)
	if err != nil {
		return err
	}
	cfg.Optimizers, cfg.Skipped = g.builds, g.skips
	ctx.SetConfig(cfg)
	vs := g.variants
	nv, nf, ns, nl := len(vs), len(spec.funcs), len(spec.starts), len(spec.lrs)

	// Cases are (function, start) pairs; keys[case][variant].
	var tunedCases [][]float64
	sharedCases := make([][][]float64, nl)
	reached := make([]int, nv)
	for fi := 0; fi < nf; fi++ {
		for si := 0; si < ns; si++ {
			keys := make([]float64, nv)
			for vi := 0; vi < nv; vi++ {
				b := g.best(vi, fi, si)
				keys[vi] = rankKey(b, spec.funcs[fi].obj.FStar)
				if b.tr.ReachedAt >= 0 {
					reached[vi]++
				}
			}
			tunedCases = append(tunedCases, keys)
			for li := 0; li < nl; li++ {
				k := make([]float64, nv)
				for vi := 0; vi < nv; vi++ {
					k[vi] = rankKey(g.run(vi, fi, si, li), spec.funcs[fi].obj.FStar)
				}
				sharedCases[li] = append(sharedCases[li], k)
			}
		}
	}
	tunedRank := meanRanks(nv, tunedCases)
	sharedRank := make([][]float64, nl)
	for li := range sharedRank {
		sharedRank[li] = meanRanks(nv, sharedCases[li])
	}

	var rep harness.Report
	rep.H1("AdaBelief toy problems (C6)")
	rep.P("**Paper's claim** (REFERENCE.md §4.1, C6):")
	rep.Quote("AdaBelief converges fast like adaptive methods, generalises like SGD and trains stably; fastest to the optimum on toy problems.")
	rep.P("**Setup:** functions %s; starts (−2, 2) and (1, −3); lr ∈ {1e-3, 1e-2, 1e-1}; %d iterations per run; the target is f − f* < 1e-2 (first iteration at which it holds). "+
		"Other hyperparameters at each solver's defaults; `sgdm` is sgd with momentum 0.9; `adabelief-norect` (added when adabelief has a `rectify` flag that is on by default) is adabelief with rectify off, the form of the original paper's update. Subgradients of |·| use sign(0) = 0. "+
		"Tuned = per optimizer, function and start, the lr that reaches the target with the fewest gradient evaluations (else the lowest final f). "+
		"Ranks: per (function, start) case, optimizers ordered by gradient evaluations to the target (= iterations for one-gradient-per-step methods; closure methods such as L-BFGS are charged every evaluation, shown as \"iters (evals)\"), then unreached runs by final f, diverged runs last; ties share a rank.",
		funcList(toys), spec.steps)

	rep.H2("Verdict")
	for _, l := range toysVerdict(g, tunedCases, tunedRank, reached) {
		rep.P("%s", l)
	}

	rep.H2("Ranking")
	var rows [][]string
	for _, vi := range orderBy(tunedRank) {
		row := []string{vs[vi].Name, F2(tunedRank[vi]), fmt.Sprintf("%d / %d", reached[vi], nf*ns)}
		for li := range spec.lrs {
			row = append(row, F2(sharedRank[li][vi]))
		}
		rows = append(rows, row)
	}
	hdr := []string{"optimizer", "mean rank (tuned lr)", "cases reaching f − f* < 1e-2 (tuned)"}
	for _, lr := range spec.lrs {
		hdr = append(hdr, fmt.Sprintf("mean rank at shared lr %g", lr))
	}
	rep.Table(hdr, rows)

	rep.H2("Per function (tuned learning rate)")
	for fi, t := range toys {
		rep.H3(t.obj.Name + " — " + t.desc)
		var rows [][]string
		for vi, v := range vs {
			row := []string{v.Name}
			for si := range spec.starts {
				b := g.best(vi, fi, si)
				row = append(row, fmt.Sprintf("%g", b.lr), itersCell(b), harness.F(b.tr.FinalF))
			}
			rows = append(rows, row)
		}
		var h []string
		h = append(h, "optimizer")
		for _, s := range spec.starts {
			l := startLabel(s)
			h = append(h, "best lr "+l, "iters "+l, "final f "+l)
		}
		rep.Table(h, rows)
		png := t.obj.Name + "_trajectories.png"
		if err := plotToyContour(ctx, png, g, fi, t, func(vi, si int) *gridRun { return g.best(vi, fi, si) }, "best lr"); err != nil {
			return err
		}
		rep.Image(t.obj.Name+" trajectories (best lr)", png)
		for si, s := range spec.starts {
			gp := fmt.Sprintf("%s_gap_start%d.png", t.obj.Name, si+1)
			if err := plotGap(ctx, gp, g, fi, si, fmt.Sprintf("%s from %s: f − f* (best lr)", t.obj.Name, startLabel(s))); err != nil {
				return err
			}
			rep.Image(t.obj.Name+" gap from "+startLabel(s), gp)
		}
	}

	rep.H2("Shared learning rates: iterations to f − f* < 1e-2")
	for fi, t := range toys {
		rep.H3(t.obj.Name)
		var rows [][]string
		for vi, v := range vs {
			row := []string{v.Name}
			for si := range spec.starts {
				for li := range spec.lrs {
					r := g.run(vi, fi, si, li)
					c := itersCell(r)
					if r.tr.ReachedAt < 0 && r.tr.OK() {
						c = "– (f=" + harness.F(r.tr.FinalF) + ")"
					}
					row = append(row, c)
				}
			}
			rows = append(rows, row)
		}
		h := []string{"optimizer"}
		for _, s := range spec.starts {
			for _, lr := range spec.lrs {
				h = append(h, fmt.Sprintf("%s lr %g", startLabel(s), lr))
			}
		}
		rep.Table(h, rows)
	}
	writeFailures(&rep, g)
	writeSettings(&rep, g.builds, "As built for the first lr of the grid; the other runs differ only in lr.")
	writeSkips(&rep, g.skips)
	rep.P("Files: `trajectories.csv` (steps 0–20 of every run, then about 100 evenly spaced steps, 20 log-spaced steps per decade, and the last), `run.json`, the PNG plots above. Iterations to the target are computed from every step, not from the logged subset.")
	return ctx.WriteReport("report.md", &rep)
}

func funcList(ts []toy2D) string {
	var s []string
	for _, t := range ts {
		s = append(s, "`"+t.obj.Name+"` ("+t.desc+")")
	}
	return strings.Join(s, ", ")
}

// F2 formats a mean rank.
func F2(x float64) string { return fmt.Sprintf("%.2f", x) }

func writeSkips(rep *harness.Report, skips []skipNote) {
	if len(skips) == 0 {
		return
	}
	rep.H2("Optimizers not run")
	var items []string
	for _, s := range skips {
		items = append(items, fmt.Sprintf("%s — skipped: %s", s.Name, s.Error))
	}
	rep.Bullets(items...)
}

// toysVerdict states the claim's status: untested without adabelief, otherwise adabelief's rank among
// the paper's comparison set (adabelief, adam, sgdm) and head-to-head counts.
func toysVerdict(g *gridResult, cases [][]float64, tunedRank []float64, reached []int) []string {
	vs := g.variants
	ab := findVariant(vs, func(n string) bool { return strings.Contains(strings.ToLower(n), "adabelief") })
	adam := findVariant(vs, func(n string) bool { return n == "adam" })
	sgdm := findVariant(vs, func(n string) bool { return n == "sgdm" })
	overall := orderBy(tunedRank)
	pos := func(vi int) int {
		for p, i := range overall {
			if i == vi {
				return p + 1
			}
		}
		return -1
	}
	var lines []string
	sub := func(idx []int) []float64 { // mean ranks within a subset
		var sc [][]float64
		for _, c := range cases {
			k := make([]float64, len(idx))
			for j, vi := range idx {
				k[j] = c[vi]
			}
			sc = append(sc, k)
		}
		return meanRanks(len(idx), sc)
	}
	if len(ab) == 0 {
		lines = append(lines, "**Verdict:** AdaBelief not built yet: the claim \"fastest to the optimum on toy problems\" is untested.")
		if len(adam) > 0 && len(sgdm) > 0 {
			idx := []int{adam[0], sgdm[0]}
			r := sub(idx)
			lines = append(lines, fmt.Sprintf("Baselines meanwhile (tuned lr, %d cases): adam reaches the target in %d cases, mean rank %s overall (position %d of %d), %s against sgdm only; sgdm reaches it in %d cases, mean rank %s overall (position %d), %s against adam only.",
				len(cases), reached[adam[0]], F2(tunedRank[adam[0]]), pos(adam[0]), len(vs), F2(r[0]), reached[sgdm[0]], F2(tunedRank[sgdm[0]]), pos(sgdm[0]), F2(r[1])))
		}
		if len(overall) > 0 {
			b := overall[0]
			lines = append(lines, fmt.Sprintf("Fastest overall with tuned lr: %s (mean rank %s, target reached in %d of %d cases).", vs[b].Name, F2(tunedRank[b]), reached[b], len(cases)))
		}
		return lines
	}
	for _, a := range ab {
		idx := []int{a}
		names := []string{vs[a].Name}
		if len(adam) > 0 {
			idx, names = append(idx, adam[0]), append(names, "adam")
		}
		if len(sgdm) > 0 {
			idx, names = append(idx, sgdm[0]), append(names, "sgdm")
		}
		r := sub(idx)
		bestOther := math.Inf(1)
		for j := 1; j < len(r); j++ {
			bestOther = math.Min(bestOther, r[j])
		}
		word := "not reproduced"
		if len(idx) > 1 && r[0] < bestOther {
			word = "reproduced"
		}
		var rs []string
		for j := range idx {
			rs = append(rs, fmt.Sprintf("%s %s", names[j], F2(r[j])))
		}
		h2h := func(o int) string {
			w, l, t := 0, 0, 0
			for _, c := range cases {
				switch {
				case c[a] < c[o]:
					w++
				case c[a] > c[o]:
					l++
				default:
					t++
				}
			}
			return fmt.Sprintf("%s is faster than %s in %d cases, slower in %d, tied in %d", vs[a].Name, vs[o].Name, w, l, t)
		}
		var hs []string
		for _, o := range idx[1:] {
			hs = append(hs, h2h(o))
		}
		lines = append(lines, fmt.Sprintf("**Verdict (%s):** %s — mean rank (tuned lr, %d cases) among the paper's set: %s; %s. Overall %s is at position %d of %d (mean rank %s), reaching the target in %d of %d cases.",
			vs[a].Name, word, len(cases), strings.Join(rs, ", "), strings.Join(hs, "; "), vs[a].Name, pos(a), len(vs), F2(tunedRank[a]), reached[a], len(cases)))
	}
	return lines
}

// plotToyContour draws the function's contours with each optimizer's trajectory (from both starts).
func plotToyContour(ctx *harness.Context, name string, g *gridResult, fi int, t toy2D, pick func(vi, si int) *gridRun, what string) error {
	var ss []harness.Series
	for vi, v := range g.variants {
		for si := range g.spec.starts {
			r := pick(vi, si)
			s := harness.Series{Style: vi}
			if si == 0 {
				s.Name = v.Name
			}
			for _, p := range r.tr.Points {
				s.X = append(s.X, p.X[0])
				s.Y = append(s.Y, p.X[1])
			}
			ss = append(ss, s)
		}
	}
	var sx, sy []float64
	for _, s := range g.spec.starts {
		sx, sy = append(sx, s[0]), append(sy, s[1])
	}
	ss = append(ss,
		harness.Series{Name: "start", X: sx, Y: sy, Points: true, Black: true, Style: 1},
		harness.Series{Name: "minimum", X: []float64{t.xStar[0]}, Y: []float64{t.xStar[1]}, Points: true, Black: true, Style: 4})
	f := t.obj.F
	return ctx.SaveContour(name, harness.ContourPlot{
		Title: fmt.Sprintf("%s: trajectories (%s, %d iterations)", t.obj.Name, what, g.spec.steps),
		F:     func(x, y float64) float64 { return f([]float64{x, y}) },
		XMin:  t.xRange[0], XMax: t.xRange[1], YMin: t.yRange[0], YMax: t.yRange[1],
		Series: ss,
	})
}

// plotGap draws f − f* against iteration (log scale) for each optimizer's best lr from one start.
func plotGap(ctx *harness.Context, name string, g *gridResult, fi, si int, title string) error {
	var ss []harness.Series
	fstar := g.spec.funcs[fi].obj.FStar
	for vi, v := range g.variants {
		r := g.best(vi, fi, si)
		s := harness.Series{Name: fmt.Sprintf("%s (lr %g)", v.Name, r.lr), Style: vi}
		for _, p := range r.tr.Points {
			s.X = append(s.X, float64(p.Step))
			s.Y = append(s.Y, math.Max(p.F-fstar, 1e-12))
		}
		ss = append(ss, s)
	}
	ss = append(ss, harness.Series{Name: "target 1e-2", X: []float64{0, float64(g.spec.steps)}, Y: []float64{1e-2, 1e-2}, Black: true})
	return ctx.SavePlot(name, harness.LinePlot{Title: title, XLabel: "iteration", YLabel: "f − f* (floored at 1e-12)", LogY: true, Series: ss})
}

// withFlagOff returns vs with, right after the variant named kind, a variant name with the flag switched
// off, if that kind's default instance has the flag switched on.
func withFlagOff(vs []harness.Variant, kind, flag, name string) []harness.Variant {
	var out []harness.Variant
	for _, v := range vs {
		out = append(out, v)
		if v.Name != kind {
			continue
		}
		_, b, err := harness.Build(v, nil)
		if err != nil || b.Resolved[flag] != 1 {
			continue
		}
		out = append(out, harness.Variant{Name: name, Kind: v.Kind, Fixed: append(append([]harness.Setting(nil), v.Fixed...), harness.Setting{Key: flag, Value: 0})})
	}
	return out
}
