package solvers_test

import (
	"bytes"
	"fmt"
	"log"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/gradlab/gradlab/solvers"
	"github.com/gradlab/gradlab/solvers/schedule"
)

// Fit y = 2x with a Gorgonia graph and gradlab's AdamW on a warm-up + cosine schedule: the solver is
// a drop-in gorgonia.Solver.
func ExampleNewAdamW() {
	g := G.NewGraph()
	xs := tensor.New(tensor.WithShape(4, 1), tensor.WithBacking([]float64{0, 1, 2, 3}))
	ys := tensor.New(tensor.WithShape(4, 1), tensor.WithBacking([]float64{0, 2, 4, 6}))
	x := G.NewMatrix(g, tensor.Float64, G.WithShape(4, 1), G.WithName("x"), G.WithValue(xs))
	y := G.NewMatrix(g, tensor.Float64, G.WithShape(4, 1), G.WithName("y"), G.WithValue(ys))
	w := G.NewMatrix(g, tensor.Float64, G.WithShape(1, 1), G.WithName("w"),
		G.WithValue(tensor.New(tensor.WithShape(1, 1), tensor.WithBacking([]float64{0}))))
	pred := G.Must(G.Mul(x, w))
	cost := G.Must(G.Mean(G.Must(G.Square(G.Must(G.Sub(pred, y))))))
	if _, err := G.Grad(cost, w); err != nil {
		log.Fatal(err)
	}
	sched, _ := schedule.Warmup(schedule.Must(schedule.Cosine(0.1, 0, 300)), 10, 0)
	opt, err := solvers.NewAdamW(solvers.WithSchedule(sched), solvers.WithWeightDecay(0))
	if err != nil {
		log.Fatal(err)
	}
	vm := G.NewTapeMachine(g, G.BindDualValues(w))
	defer vm.Close()
	for i := 0; i < 300; i++ {
		if err := vm.RunAll(); err != nil {
			log.Fatal(err)
		}
		if err := opt.Step(G.NodesToValueGrads(G.Nodes{w})); err != nil {
			log.Fatal(err)
		}
		vm.Reset()
	}
	fmt.Printf("w = %.2f after %d steps\n", w.Value().Data().([]float64)[0], opt.StepCount())
	// Output: w = 2.00 after 300 steps
}

// Route hidden matrices and everything else to different solvers with their own hyperparameters.
func ExampleNewGroups() {
	matrices, _ := solvers.NewAdamW(solvers.WithLR(3e-3), solvers.WithWeightDecay(0.1))
	rest, _ := solvers.NewAdamW(solvers.WithLR(3e-3), solvers.WithWeightDecay(0))
	opt, err := solvers.NewGroups(
		solvers.Route{Name: "hidden", Match: solvers.MatchMatrices, Solver: matrices},
		solvers.Route{Name: "rest", Solver: rest},
	)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(opt.Route("block0.w_q", tensor.Shape{64, 64}), opt.Route("block0.norm", tensor.Shape{64}))
	// Output: hidden rest
}

// Save a solver's full state to a safetensors file and restore it bit for bit.
func ExampleSaveState() {
	p := solvers.NewParamFrom("w", []int{2}, []float64{1, 2})
	opt, _ := solvers.NewAdam(solvers.WithLR(0.1))
	copy(p.GradTensor().Data().([]float64), []float64{0.5, -0.5})
	_ = opt.Step(solvers.Params(p))

	var buf bytes.Buffer
	if err := solvers.SaveState(&buf, opt); err != nil {
		log.Fatal(err)
	}
	fresh, _ := solvers.NewAdam(solvers.WithLR(0.1))
	if err := solvers.LoadState(&buf, fresh); err != nil {
		log.Fatal(err)
	}
	fmt.Println(fresh.ParamStep("w"), fresh.StateBytes())
	// Output: 1 32
}
