package solvers

import "testing"

func TestFRUGALConvergence(t *testing.T) {
	mxRunConvergence(t, []mxCase{
		{name: "frugal-rho0.25", build: func(o ...Option) (Solver, error) { return NewFRUGAL(o...) },
			opts: []Option{Set("update_gap", 50), WithWeightDecay(0)}, lsLR: 0.02, lsN: 3000, quad: 0.02},
		{name: "frugal-keep-stats", build: func(o ...Option) (Solver, error) { return NewFRUGAL(o...) },
			opts: []Option{Set("density", 0.5), Set("update_gap", 20), SetFlag("reset_statistics", false), WithWeightDecay(0), Set("inactive_lr_scale", 0.1)}, lsLR: 0.02, lsN: 3000, quad: 0.02},
	})
}

func TestFRUGALRoundTrip(t *testing.T) {
	mxRunRoundTrip(t, "frugal", func() (Solver, error) {
		return NewFRUGAL(WithLR(0.01), Set("density", 0.5), Set("update_gap", 3))
	})
}

func TestFRUGALNoAllocs(t *testing.T) {
	mxRunNoAllocs(t, "frugal", func() (Solver, error) { return NewFRUGAL() })
}
