package moe_test

import (
	"fmt"
	"math/rand"

	"github.com/gradlab/gradlab/moe"
	"github.com/gradlab/gradlab/nn"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// An MoE layer with a DeepSeek-V3 sigmoid router, one shared expert and the balancing loss, trained for one
// step with plain SGD, followed by the auxiliary-loss-free bias update.
func Example() {
	g := G.NewGraph()
	b, _ := nn.NewBuilder(g, tensor.Float64, rand.New(rand.NewSource(1)))
	layer, err := moe.NewLayer(b, "layers.0.ffn", moe.Config{
		Dim: 16, Hidden: 8, Experts: 8, TopK: 2, Shared: 1,
		Router: moe.Sigmoid, AuxAlpha: 1e-2,
	})
	if err != nil {
		panic(err)
	}
	const tokens = 32
	x := G.NewMatrix(g, tensor.Float64, G.WithShape(tokens, 16), G.WithName("x"),
		G.WithValue(nn.Normal(0, 1)(rand.New(rand.NewSource(2)), tensor.Float64, tokens, 16)))
	out, err := layer.Forward(x)
	if err != nil {
		panic(err)
	}
	h := G.Must(G.Add(x, out.Y)) // the residual
	cost := G.Must(G.Add(G.Must(G.Mean(G.Must(G.Square(h)))), out.Loss))
	if _, err := G.Grad(cost, layer.Params()...); err != nil {
		panic(err)
	}
	vm := G.NewTapeMachine(g, G.BindDualValues(layer.Params()...))
	defer vm.Close()
	if err := vm.RunAll(); err != nil {
		panic(err)
	}
	if err := G.NewVanillaSolver(G.WithLearnRate(0.1)).Step(G.NodesToValueGrads(layer.Params())); err != nil {
		panic(err)
	}
	st := layer.Stats()
	fmt.Println("tokens:", st.Tokens, "selections:", sum(st.Load))
	fmt.Println("active/total parameters:", st.ActiveParams, "/", st.TotalParams)
	if _, err := layer.UpdateBias(); err != nil { // after the optimizer step
		panic(err)
	}
	moved := 0
	for _, v := range layer.BiasValues() {
		if v != 0 {
			moved++
		}
	}
	fmt.Println("bias entries moved:", moved > 0)
	// Output:
	// tokens: 32 selections: 64
	// active/total parameters: 1280 / 3584
	// bias entries moved: true
}

func sum(xs []int) int {
	s := 0
	for _, x := range xs {
		s += x
	}
	return s
}
