package zeroth

import (
	"math"
	"testing"

	"github.com/gradlab/gradlab/solvers"
)

func ackley(x []float64) float64 {
	d := float64(len(x))
	s1, s2 := 0.0, 0.0
	for _, v := range x {
		s1 += v * v
		s2 += math.Cos(2 * math.Pi * v)
	}
	return -20*math.Exp(-0.2*math.Sqrt(s1/d)) - math.Exp(s2/d) + 20 + math.E
}

func ackleyGrad(x, g []float64) {
	d := float64(len(x))
	s1, s2 := 0.0, 0.0
	for _, v := range x {
		s1 += v * v
		s2 += math.Cos(2 * math.Pi * v)
	}
	r := math.Sqrt(s1 / d)
	for i, v := range x {
		g[i] = 0
		if r > 0 {
			g[i] = 4 * math.Exp(-0.2*r) * v / (d * r)
		}
		g[i] += math.Exp(s2/d) * 2 * math.Pi * math.Sin(2*math.Pi*v) / d
	}
}

func rastrigin(x []float64) float64 {
	s := 10 * float64(len(x))
	for _, v := range x {
		s += v*v - 10*math.Cos(2*math.Pi*v)
	}
	return s
}

func rastriginGrad(x, g []float64) {
	for i, v := range x {
		g[i] = 2*v + 20*math.Pi*math.Sin(2*math.Pi*v)
	}
}

// inGlobalBasin: every coordinate within 0.5 of the global minimiser 0 (the cell of the origin in the
// integer lattice of local minima of both functions).
func inGlobalBasin(x []float64) bool {
	for _, v := range x {
		if math.Abs(v) >= 0.5 {
			return false
		}
	}
	return true
}

func gradientDescent(grad func(x, g []float64), x0 []float64, lr float64, steps int) []float64 {
	x := append([]float64(nil), x0...)
	g := make([]float64, len(x))
	for t := 0; t < steps; t++ {
		grad(x, g)
		for i := range x {
			x[i] -= lr * g[i]
		}
	}
	return x
}

// TestCBOGlobalBasin: from a start in a local basin (every coordinate 2.3, next to the local minimum near
// 2), gradient descent stalls in that local minimum, while CBO (particles spread around the same start)
// reaches the global basin in most of 10 seeds: asserted (≥ 6/10) for Ackley d = 2, 5, 10 and Rastrigin
// d = 2, 5. Rastrigin d = 10 from this start is only reported: with N = 300 particles and 1000 steps our
// sweeps (σ ∈ [0.7, 4], α ∈ [30, 1e5], InitStd ∈ [2, 5]) reached its global basin in at most 4/10 seeds.
func TestCBOGlobalBasin(t *testing.T) {
	for _, fn := range []struct {
		name string
		f    func([]float64) float64
		g    func(x, g []float64)
		lr   float64
		cfg  [4]float64 // σ, α, InitStd, N
	}{{"ackley", ackley, ackleyGrad, 0.05, [4]float64{2, 1e4, 3, 200}}, {"rastrigin", rastrigin, rastriginGrad, 0.002, [4]float64{4, 1e5, 4, 300}}} {
		for _, d := range []int{2, 5, 10} {
			x0 := make([]float64, d)
			for i := range x0 {
				x0[i] = 2.3
			}
			xg := gradientDescent(fn.g, x0, fn.lr, 2000)
			gdOK := inGlobalBasin(xg)
			wins := 0
			var evals int64
			var fsum float64
			for seed := uint64(1); seed <= 10; seed++ {
				c := DefaultCBO()
				c.Seed, c.Sigma, c.Alpha, c.InitStd, c.N = seed, fn.cfg[0], fn.cfg[1], fn.cfg[2], int(fn.cfg[3])
				res, err := c.Minimize(fn.f, x0, 1000)
				if err != nil {
					t.Fatal(err)
				}
				evals = res.Evals
				fsum += res.F
				if inGlobalBasin(res.Consensus) {
					wins++
				}
			}
			t.Logf("%s d=%d: GD from x0 ends at f=%.3f (global basin: %v); CBO reached the global basin in %d/10 seeds (mean f(v_α)=%.3g, %d evals each)",
				fn.name, d, fn.f(xg), gdOK, wins, fsum/10, evals)
			if gdOK {
				t.Errorf("%s d=%d: gradient descent was expected to stall in a local minimum", fn.name, d)
			}
			if fn.name == "rastrigin" && d == 10 {
				continue // reported, not asserted: see the test's doc comment
			}
			if wins < 6 {
				t.Errorf("%s d=%d: CBO reached the global basin in only %d/10 seeds", fn.name, d, wins)
			}
		}
	}
	if _, err := (CBO{N: 1}).Minimize(ackley, []float64{0}, 1); err == nil {
		t.Error("invalid CBO settings accepted")
	}
}

// TestESDescends: antithetic ES with centred ranks, fed to gradlab's Adam, minimises the quadratic, and its
// direction is positively correlated with the gradient.
func TestESDescends(t *testing.T) {
	q := newQuad(20, 4)
	f := func(x []float64) float64 {
		s := 0.0
		for i, v := range x {
			s += 0.5 * q.a[i] * (v - q.c[i]) * (v - q.c[i])
		}
		return s
	}
	x0 := q.x()
	p := solvers.NewParamFrom("x", []int{len(x0)}, x0)
	es, _ := NewES(16, 0.1, 3)
	opt, _ := solvers.New("adam", solvers.WithLR(0.05))
	x := p.Tensor().Float64s()
	g := p.GradTensor().Float64s()
	l0 := f(x)
	es.Estimate(f, x, g)
	gt := q.grad()
	cos := dot(g, gt) / math.Sqrt(dot(g, g)*dot(gt, gt))
	for i := 0; i < 600; i++ {
		if _, err := es.Estimate(f, x, g); err != nil {
			t.Fatal(err)
		}
		opt.Step(solvers.Params(p))
	}
	l1 := f(x)
	t.Logf("ES(N=32, σ=0.1) + Adam: loss %.4g -> %.4g, first cos(ĝ, ∇f) = %.3f, %d forwards, StateBytes %d", l0, l1, cos, es.Forwards(), es.StateBytes())
	if cos <= 0 || !(l1 < 0.01*l0) {
		t.Errorf("ES: cos %.3f, loss %.4g -> %.4g", cos, l0, l1)
	}
}

// TestRankSGDCorrelation: the ZO-RankSGD direction −ĝ correlates positively with −∇f. Over S = 400
// independent queries the mean cosine must exceed 4 standard errors (sample sd/√S) — a variance-based
// bound; the expected size is ≈ c/√d for small μ (a Gaussian ξ has cos(ξ, g) of order 1/√d).
func TestRankSGDCorrelation(t *testing.T) {
	const d, S = 30, 400
	q := newQuad(d, 8)
	f := func(x []float64) float64 {
		s := 0.0
		for i, v := range x {
			s += 0.5 * q.a[i] * (v - q.c[i]) * (v - q.c[i])
		}
		return s
	}
	x := q.x()
	gt := q.grad()
	for _, tc := range []struct {
		m, k int
		code bool
	}{{2, 0, false}, {5, 0, false}, {8, 3, false}, {8, 3, true}} {
		rs, err := NewRankSGD(tc.m, 0.01, 5)
		if err != nil {
			t.Fatal(err)
		}
		rs.CodeWeights = tc.code
		oracle := &LossOracle{F: f, K: tc.k}
		g := make([]float64, d)
		sum, sum2 := 0.0, 0.0
		for s := 0; s < S; s++ {
			if err := rs.Direction(x, oracle, g); err != nil {
				t.Fatal(err)
			}
			c := dot(g, gt) / math.Sqrt(dot(g, g)*dot(gt, gt))
			sum += c
			sum2 += c * c
		}
		mean := sum / S
		sd := math.Sqrt((sum2 - S*mean*mean) / (S - 1))
		t.Logf("ZO-RankSGD m=%d top-k=%d codeWeights=%v: mean cos(ĝ, ∇f) = %.3f ± %.3f (sd %.3f, %d queries)", tc.m, tc.k, tc.code, mean, sd/math.Sqrt(S), sd, rs.Queries())
		if mean <= 4*sd/math.Sqrt(S) {
			t.Errorf("m=%d k=%d: mean cosine %.4f not above 4 standard errors %.4f", tc.m, tc.k, mean, 4*sd/math.Sqrt(S))
		}
	}
	// The code's weights differ from the paper's by exactly (1/|E|) Σ_{ranked} ξ_p on −ĝ.
	a, _ := NewRankSGD(6, 0.1, 9)
	b, _ := NewRankSGD(6, 0.1, 9)
	b.CodeWeights = true
	ga, gb := make([]float64, d), make([]float64, d)
	oa, ob := &LossOracle{F: f, K: 2}, &LossOracle{F: f, K: 2}
	a.Direction(x, oa, ga)
	b.Direction(x, ob, gb)
	nE := float64(2*1/2 + 2*4)
	for j := 0; j < d; j++ {
		want := ga[j] - (a.xi[oa.idx[0]][j]+a.xi[oa.idx[1]][j])/nE
		if math.Abs(gb[j]-want) > 1e-12 {
			t.Fatalf("code weights: g[%d] = %v, want %v", j, gb[j], want)
		}
	}
	// m = 2: ĝ = ξ_worse − ξ_better.
	c, _ := NewRankSGD(2, 0.1, 1)
	o2 := &LossOracle{F: f}
	c.Direction(x, o2, ga)
	for j := 0; j < d; j++ {
		if want := c.xi[o2.idx[1]][j] - c.xi[o2.idx[0]][j]; math.Abs(ga[j]-want) > 1e-12 {
			t.Fatalf("m=2: g[%d] = %v, want ξ_worse − ξ_better = %v", j, ga[j], want)
		}
	}
}
