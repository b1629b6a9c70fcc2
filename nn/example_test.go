package nn_test

import (
	"fmt"
	"math/rand"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"github.com/gradlab/gradlab/nn"
)

// A one-block pre-norm language model on a toy sequence: embedding, RMSNorm, RoPE, a SwiGLU residual
// branch, a tied output head and the cross-entropy of the next token, trained a few steps with plain SGD.
func Example() {
	const vocab, d, T = 11, 16, 8
	g := G.NewGraph()
	b, err := nn.NewBuilder(g, tensor.Float32, rand.New(rand.NewSource(1)))
	if err != nil {
		panic(err)
	}
	emb, _ := nn.NewEmbedding(b, "tok", vocab, d, nn.WithInit(nn.Normal(0, 0.5)))
	norm1, _ := nn.NewRMSNorm(b, "blocks.0.norm1", d)
	ffn, _ := nn.NewSwiGLU(b, "blocks.0.ffn", d) // d_ff = DefaultHidden(16, 64) = 64
	norm2, _ := nn.NewRMSNorm(b, "norm", d)
	rope, _ := nn.NewRoPE(d, 64, nn.DefaultRoPEBase, nn.Interleaved)

	seq := []int{1, 2, 3, 4, 5, 6, 7, 8, 9}
	ids := G.NewVector(g, tensor.Int, G.WithShape(T), G.WithName("ids"),
		G.WithValue(tensor.New(tensor.WithBacking(seq[:T]))))
	targets := G.NewVector(g, tensor.Int, G.WithShape(T), G.WithName("targets"),
		G.WithValue(tensor.New(tensor.WithBacking(seq[1:]))))

	x := G.Must(emb.Forward(ids))                          // (T, d)
	h := G.Must(rope.Apply(G.Must(norm1.Forward(x)), 0))   // rows are positions 0..T-1
	x = G.Must(G.Add(x, G.Must(ffn.Forward(h))))           // residual
	logits := G.Must(emb.Attend(G.Must(norm2.Forward(x)))) // (T, vocab), tied head
	loss := G.Must(nn.CrossEntropy(logits, targets))       // mean over the T rows
	if _, err := G.Grad(loss, b.Params()...); err != nil {
		panic(err)
	}
	var lossVal G.Value
	G.Read(loss, &lossVal)
	vm := G.NewTapeMachine(g, G.BindDualValues(b.Params()...))
	defer vm.Close()
	solver := G.NewVanillaSolver(G.WithLearnRate(0.5))
	for step := 0; step <= 30; step++ {
		if err := vm.RunAll(); err != nil {
			panic(err)
		}
		if step%10 == 0 {
			fmt.Printf("step %2d: loss %.2f\n", step, lossVal.Data().(float32))
		}
		if err := solver.Step(G.NodesToValueGrads(b.Params())); err != nil {
			panic(err)
		}
		vm.Reset()
	}
	fmt.Println(len(b.Params()), "parameters, first:", b.Params()[0].Name())
	// Output:
	// step  0: loss 7.48
	// step 10: loss 0.05
	// step 20: loss 0.02
	// step 30: loss 0.01
	// 6 parameters, first: tok.weight
}
