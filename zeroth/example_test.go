package zeroth_test

import (
	"fmt"

	"github.com/gradlab/gradlab/solvers"
	"github.com/gradlab/gradlab/zeroth"
)

// Example trains f(θ) = ½‖θ − c‖² from forward passes only, first with the fused in-place MeZO step
// (no gradient memory), then with the SPSA estimator feeding gradlab's AdamW (ZO-AdamW).
func Example() {
	c := []float64{1, -2, 3, 0.5}
	theta := solvers.NewParamFrom("theta", []int{4}, make([]float64, 4))
	w := theta.Tensor().Float64s()
	loss := func() (float64, error) { // forward only, at the current weights
		s := 0.0
		for i := range w {
			s += 0.5 * (w[i] - c[i]) * (w[i] - c[i])
		}
		return s, nil
	}
	params := solvers.Params(theta)

	mezo, _ := zeroth.NewMeZO(zeroth.WithLR(0.05), zeroth.WithEps(1e-3), zeroth.WithSeed(1))
	for i := 0; i < 500; i++ {
		mezo.Step(params, loss)
	}
	l, _ := loss()
	fmt.Printf("MeZO: loss %.4f after %d forwards\n", l, mezo.Forwards())

	clear(w)
	est, _ := zeroth.NewEstimator(zeroth.WithDirections(2), zeroth.WithSeed(1))
	adamw, _ := solvers.New("adamw", solvers.WithLR(0.05), solvers.WithWeightDecay(0))
	for i := 0; i < 500; i++ {
		est.Estimate(params, loss) // fills theta's gradient with ĝ
		adamw.Step(params)
	}
	l, _ = loss()
	fmt.Printf("ZO-AdamW: loss %.4f\n", l)
	// Output:
	// MeZO: loss 0.0000 after 1000 forwards
	// ZO-AdamW: loss 0.0000
}
