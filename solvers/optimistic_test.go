package solvers

import "testing"

func TestOptimisticAMSGradConvergence(t *testing.T) {
	foConverge(t, []foCase{
		{name: "optamsgrad", build: plain("optamsgrad"), quad: 0.02, rosen: 0.01, steps: 10000},
	})
}

func TestOptimisticAMSGradStateRoundTrip(t *testing.T) {
	foRoundTrip(t, map[string]func() (Solver, error){
		"optamsgrad": func() (Solver, error) { return asSolver(NewOptimisticAMSGrad()) },
	})
}

func TestOptimisticAMSGradNoAllocs(t *testing.T) {
	foNoAllocs(t, map[string]func() (Solver, error){
		"optamsgrad": func() (Solver, error) { return asSolver(NewOptimisticAMSGrad()) },
	})
}

func TestOptimisticAMSGradBadHyperparameters(t *testing.T) {
	foBad(t, map[string]func() (Solver, error){
		"eps 0":     func() (Solver, error) { return asSolver(NewOptimisticAMSGrad(WithEps(0))) },
		"beta2 1":   func() (Solver, error) { return asSolver(NewOptimisticAMSGrad(WithBetas(0.9, 1))) },
		"wd absent": func() (Solver, error) { return asSolver(NewOptimisticAMSGrad(WithWeightDecay(0.1))) },
	})
}
