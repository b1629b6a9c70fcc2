package schedule_test

import (
	"fmt"

	"github.com/gradlab/gradlab/solvers/schedule"
)

// Linear warm-up over 3 steps multiplied onto a cosine decay of 10 steps
// from 0.1 to 0.001; the cosine keeps counting from t = 0 and reaches its
// minimum at t = 10.
func Example() {
	cos, err := schedule.Cosine(0.1, 0.001, 10)
	if err != nil {
		panic(err)
	}
	lr, err := schedule.Warmup(cos, 3, 0)
	if err != nil {
		panic(err)
	}
	for t := 0; t <= 11; t++ {
		fmt.Printf("t=%2d lr=%.5f\n", t, lr.At(t))
	}
	// Output:
	// t= 0 lr=0.03333
	// t= 1 lr=0.06505
	// t= 2 lr=0.09055
	// t= 3 lr=0.07960
	// t= 4 lr=0.06580
	// t= 5 lr=0.05050
	// t= 6 lr=0.03520
	// t= 7 lr=0.02140
	// t= 8 lr=0.01045
	// t= 9 lr=0.00342
	// t=10 lr=0.00100
	// t=11 lr=0.00100
}

// A WSD schedule: 2 warm-up steps, constant, then a 1−√u cooldown over the
// last 30% of 10 steps.
func ExampleWSD() {
	lr := schedule.Must(schedule.WSD(1, 10, 2, 0.3, schedule.OneMinusSqrt, 0))
	for t := 0; t <= 10; t++ {
		fmt.Printf("%.3f ", lr.At(t))
	}
	fmt.Println()
	// Output:
	// 0.500 1.000 1.000 1.000 1.000 1.000 1.000 1.000 0.423 0.184 0.000
}
