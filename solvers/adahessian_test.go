package solvers

import (
	"math"
	"testing"

	"github.com/gradlab/gradlab/solvers/schedule"
)

// curvLogisticProblem is L2-regularised logistic regression as a convergence problem: done when the
// gradient norm is below 1e-2.
func curvLogisticProblem() problem {
	xs, ys := curvLogisticData(40, 5, 21)
	f := curvLogisticLoss(xs, ys, 0.1)
	g := make([]float64, 5)
	return problem{
		name:  "logistic",
		dim:   5,
		start: func(i int) float64 { return 1 - 0.3*float64(i) },
		f:     func(x []float64) float64 { return f(x, g) },
		grad:  func(x, out []float64) { f(x, out) },
		done: func(x []float64) bool {
			f(x, g)
			return curvNorm(g) < 1e-2
		},
	}
}

// curvCase is one curvature solver with its settings per problem (constant lr when fixed).
type curvCase struct {
	name  string
	build func(opts ...Option) (Solver, error)
	opts  []Option
	lr    map[string]float64
	steps map[string]int
	fixed bool
}

func curvConvergence(t *testing.T, cases []curvCase) {
	for _, c := range cases {
		for _, p := range []problem{quadratic(), rosenbrock(), curvLogisticProblem()} {
			for _, dtype := range []string{"float32", "float64"} {
				t.Run(c.name+"/"+p.name+"/"+dtype, func(t *testing.T) {
					steps, lr := c.steps[p.name], c.lr[p.name]
					if steps == 0 {
						t.Skip("not run for this variant (see the case's comment)")
					}
					lrOpt := WithSchedule(schedule.Must(schedule.Cosine(lr, 0, steps)))
					if c.fixed {
						lrOpt = WithLR(lr)
					}
					s, err := c.build(append(append([]Option{}, c.opts...), lrOpt)...)
					if err != nil {
						t.Fatal(err)
					}
					x := minimize(t, s, p, dtype, steps)
					if !p.done(x) {
						t.Fatalf("did not converge: x = %v, f = %g", x, p.f(x))
					}
					if s.StateBytes() <= 0 {
						t.Fatal("StateBytes is 0 after steps")
					}
				})
			}
		}
	}
}

func TestAdaHessianConvergence(t *testing.T) {
	curvConvergence(t, []curvCase{{
		name:  "adahessian",
		build: plain("adahessian"),
		lr:    map[string]float64{"quadratic": 0.3, "rosenbrock": 0.1, "logistic": 0.3},
		// no Rosenbrock: with k = 1 the diagonal step stalls in the curved valley (f ≈ 4 after 10⁴ steps at
		// any lr tried); k = 1/2 below gets through
		steps: map[string]int{"quadratic": 300, "logistic": 300},
	}, {
		// with k = 1 the diagonal step stalls in Rosenbrock's curved valley; k = 1/2 (the Adam-like power)
		// gets through
		name:  "adahessian-k0.5",
		build: plain("adahessian"),
		opts:  []Option{Set("hessian_power", 0.5)},
		lr:    map[string]float64{"quadratic": 0.3, "rosenbrock": 0.1, "logistic": 0.3},
		steps: map[string]int{"quadratic": 300, "rosenbrock": 10000, "logistic": 300},
	}})
}

// curvModelClosure is a deterministic smooth objective over a test model's parameters (the model's random
// gradients are ignored): f = Σ_j (½a_j x_j² + 0.01 x_j⁴) + 0.05(Σ_j x_j)², a_j = 1 + j mod 5.
func curvModelClosure(tm *testModel) Closure {
	return func() (float64, error) {
		var sum float64
		for _, p := range tm.ps {
			for _, x := range values(p) {
				sum += x
			}
		}
		f := 0.05 * sum * sum
		j := 0
		for _, p := range tm.ps {
			x := values(p)
			g := make([]float64, len(x))
			for i, v := range x {
				a := 1 + float64(j%5)
				j++
				f += 0.5*a*v*v + 0.01*v*v*v*v
				g[i] = a*v + 0.04*v*v*v + 0.1*sum
			}
			setGrad(p, g)
		}
		return f, nil
	}
}

func curvClosureStep(s Solver, tm *testModel) error {
	_, err := s.(ClosureSolver).StepClosure(Params(tm.ps...), curvModelClosure(tm))
	return err
}

func TestAdaHessianStateRoundTrip(t *testing.T) {
	for _, dtype := range []string{"float32", "float64"} {
		r := roundTrip(t, func() (Solver, error) {
			return NewAdaHessian(WithLR(0.05), WithWeightDecay(0.01), Set("hessian_power", 0.5), Set("probes", 2), Set("seed", 3))
		}, dtype, 4, 3, nil, curvClosureStep)
		size := 4
		if dtype == "float64" {
			size = 8
		}
		if got, want := r.resumed.StateBytes(), int64(2*size*(12+3+12)); got != want {
			t.Fatalf("StateBytes %d, want %d", got, want)
		}
	}
}

func TestAdaHessianOptions(t *testing.T) {
	bad := [][]Option{
		{Set("hessian_power", 1.5)}, {Set("beta2", 1)}, {Set("probes", 0)}, {Set("seed", -1)},
		{WithLR(-1)}, {Set("momentum", 0.9)},
	}
	for _, o := range bad {
		if _, err := NewAdaHessian(o...); err == nil {
			t.Fatalf("options %v accepted", o)
		}
	}
	s, _ := NewAdaHessian()
	tm := newTestModel("float64", 1)
	if err := s.Step(Params(tm.ps...)); err == nil {
		t.Fatal("Step without a closure accepted")
	}
	// a non-finite gradient refuses the step: weights and state untouched
	tm2 := newTestModel("float64", 1)
	before := tm2.snapshot()
	_, err := s.StepClosure(Params(tm2.ps...), func() (float64, error) {
		setGrad(tm2.ps[0], []float64{math.Inf(1), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
		return 0, nil
	})
	if err == nil || !sameBits(before, tm2.snapshot()) || s.StateBytes() != 0 {
		t.Fatalf("non-finite gradient: err %v, weights or state changed", err)
	}
}
