package solvers

import "testing"

func TestFiraConvergence(t *testing.T) {
	mxRunConvergence(t, []mxCase{
		{name: "fira-r2", build: func(o ...Option) (Solver, error) { return NewFira(o...) },
			opts: []Option{Set("rank", 2), Set("update_proj_gap", 50)}, lsLR: 0.05, lsN: 2000, quad: 0.05},
	})
}

func TestFiraRoundTrip(t *testing.T) {
	mxRunRoundTrip(t, "fira", func() (Solver, error) {
		return NewFira(WithLR(0.01), Set("rank", 2), Set("update_proj_gap", 3), WithWeightDecay(0.1))
	})
}

func TestFiraNoAllocs(t *testing.T) {
	mxRunNoAllocs(t, "fira", func() (Solver, error) { return NewFira(Set("rank", 4)) })
}

// TestFiraLimiter: the norm of the scaled residual grows by at most γ = 1.01 per step.
func TestFiraLimiter(t *testing.T) {
	s, _ := NewFira(Set("rank", 1), WithLR(0))
	p := NewParamFrom("w", []int{4, 6}, make([]float64, 24))
	g := make([]float64, 24)
	prev := 0.0
	for k := 0; k < 6; k++ {
		for i := range g {
			g[i] = float64((i*(k+3))%7-3) * float64(1+10*k) // growing gradients
		}
		setGrad(p, g)
		if err := s.Step(Params(p)); err != nil {
			t.Fatal(err)
		}
		cur := s.states["w"].scal[0]
		if k > 0 && cur > (prev+1e-8)*firaGamma*(1+1e-12) {
			t.Fatalf("step %d: residual norm %v grew more than γ from %v", k, cur, prev)
		}
		prev = cur
	}
}
