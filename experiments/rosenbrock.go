package main

import (
	"fmt"
	"math"

	"github.com/gradlab/gradlab/experiments/harness"
)

const rosenbrockClaim = "Benchmark (part of C6's toys): from the classic start (−1.2, 1), how close each optimizer gets to the Rosenbrock minimum (1, 1) with its best lr in {1e-3, 1e-2, 1e-1}."

func init() {
	harness.Register(&harness.Experiment{
		Name:    "rosenbrock",
		Claim:   rosenbrockClaim,
		Default: true,
		Run:     runRosenbrock,
	})
}

// rosenbrockConfig is the recorded configuration of the rosenbrock experiment.
type rosenbrockConfig struct {
	Start      [2]float64      `json:"start"`
	LRs        []float64       `json:"lr_grid"`
	Iterations int             `json:"iterations"`
	Tuning     string          `json:"tuning"`
	Optimizers []harness.Built `json:"optimizers"`
	Skipped    []skipNote      `json:"skipped,omitempty"`
}

func runRosenbrock(ctx *harness.Context) error {
	t := fn2("rosenbrock", "(1−x)² + 100(y−x²)²", rosenbrock, rosenbrockGrad, 0, [2]float64{1, 1})
	t.xRange, t.yRange = [2]float64{-2, 2}, [2]float64{-1, 3}
	spec := gridSpec{
		exp:    ctx.Name,
		funcs:  []toy2D{t},
		starts: [][2]float64{{-1.2, 1}},
		lrs:    []float64{1e-3, 1e-2, 1e-1},
		steps:  ctx.Pick(500, 5000, 20000),
		target: 1e-2,
	}
	g, err := runGrid(ctx, spec)
	if err != nil {
		return err
	}
	ctx.SetConfig(rosenbrockConfig{Start: spec.starts[0], LRs: spec.lrs, Iterations: spec.steps,
		Tuning: "per optimizer, the lr with the smallest final distance to (1, 1); failed runs lose", Optimizers: g.builds, Skipped: g.skips})

	dist := func(r *gridRun) float64 {
		if len(r.tr.Final) < 2 || !r.tr.OK() {
			return math.Inf(1)
		}
		return math.Hypot(r.tr.Final[0]-1, r.tr.Final[1]-1)
	}
	vs := g.variants
	bestIdx := make([]int, len(vs))
	bestD := make([]float64, len(vs))
	for vi := range vs {
		bestD[vi] = dist(g.run(vi, 0, 0, 0))
		for li := 1; li < len(spec.lrs); li++ {
			if d := dist(g.run(vi, 0, 0, li)); d < bestD[vi] {
				bestIdx[vi], bestD[vi] = li, d
			}
		}
	}
	best := func(vi int) *gridRun { return g.run(vi, 0, 0, bestIdx[vi]) }

	var rep harness.Report
	rep.H1("Rosenbrock from (−1.2, 1)")
	rep.P("%s", rosenbrockClaim)
	rep.P("**Setup:** f = (1−x)² + 100(y−x²)², minimum f = 0 at (1, 1); start (−1.2, 1); lr ∈ {1e-3, 1e-2, 1e-1}; %d iterations; other hyperparameters at each solver's defaults; `sgdm` is sgd with momentum 0.9. The best lr is the one with the smallest final distance to (1, 1).", spec.steps)
	rep.H2("Final distance to (1, 1), best lr")
	var rows [][]string
	for _, vi := range orderBy(bestD) {
		r := best(vi)
		fx, fy := math.NaN(), math.NaN()
		if len(r.tr.Final) == 2 {
			fx, fy = r.tr.Final[0], r.tr.Final[1]
		}
		row := []string{vs[vi].Name, fmt.Sprintf("%g", r.lr), fmt.Sprintf("(%s, %s)", harness.F(fx), harness.F(fy)), dCell(bestD[vi]), harness.F(r.tr.FinalF), itersCell(r)}
		for li := range spec.lrs {
			rr := g.run(vi, 0, 0, li)
			c := dCell(dist(rr))
			if !rr.tr.OK() {
				c = shortStatus(rr.tr.Status)
			}
			row = append(row, c)
		}
		rows = append(rows, row)
	}
	hdr := []string{"optimizer", "best lr", "final (x, y)", "distance to (1, 1)", "final f", "iters to f < 1e-2"}
	for _, lr := range spec.lrs {
		hdr = append(hdr, fmt.Sprintf("distance at lr %g", lr))
	}
	rep.Table(hdr, rows)
	if err := plotToyContour(ctx, "trajectories.png", g, 0, t, func(vi, si int) *gridRun { return best(vi) }, "best lr"); err != nil {
		return err
	}
	rep.Image("Rosenbrock trajectories (best lr)", "trajectories.png")
	var ss []harness.Series
	for vi, v := range vs {
		r := best(vi)
		s := harness.Series{Name: fmt.Sprintf("%s (lr %g)", v.Name, r.lr), Style: vi}
		for _, p := range r.tr.Points {
			s.X = append(s.X, float64(p.Step))
			s.Y = append(s.Y, math.Max(math.Hypot(p.X[0]-1, p.X[1]-1), 1e-12))
		}
		ss = append(ss, s)
	}
	if err := ctx.SavePlot("distance.png", harness.LinePlot{Title: "Rosenbrock: distance to (1, 1) (best lr)", XLabel: "iteration", YLabel: "‖(x, y) − (1, 1)‖", LogY: true, Series: ss}); err != nil {
		return err
	}
	rep.Image("distance to the minimum", "distance.png")
	writeFailures(&rep, g)
	writeSettings(&rep, g.builds, "As built for the first lr of the grid; the other runs differ only in lr.")
	writeSkips(&rep, g.skips)
	rep.P("Files: `trajectories.csv` (steps 0–20 of every run, then about 100 evenly spaced steps, 20 log-spaced steps per decade, and the last), `run.json`, the PNG plots above.")
	return ctx.WriteReport("report.md", &rep)
}

func dCell(d float64) string {
	if math.IsInf(d, 1) {
		return "failed"
	}
	return harness.F(d)
}
