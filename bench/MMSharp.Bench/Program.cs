using MMSharp.Bench;

// Benchmarks, one line of numbers per case. Usage:
//   mmsharp-bench gemm [--dtype fp32|bf16w] [--m M] [--k K] [--n N] [--threads T] [--path avx512|avx2|scalar] [--clock cpu]
//   mmsharp-bench bandwidth [--threads T]
//   mmsharp-bench attention [--threads T] [--t 1024] [--d 64] [--reps 5]
//   mmsharp-bench generate --preset internvl3-1b [--threads T] [--team on|off] [--tokens 32] [--warmup 3] [--prefetch BYTES] [--profile 1] [--hugepages 0] [--weights arena|mapped|mapped-cold|copied]
//   mmsharp-bench decode-ab [--threads 2] [--rounds 8] [--block 4] [--prompt 300] [--clock cpu] [--b op|norescue|chunk32|chunk128|chunk256|nopf|pf:BYTES|nonext|next:BYTES]
//   mmsharp-bench gemv-shape [--count 24] [--reps 11] [--wrap 2432] [--threads 2]
//   mmsharp-bench decode-attention [--g 7] [--tk 330,1000]
//   mmsharp-bench gemv-rows [--k 4864,896]
//   mmsharp-bench gemv-pages [--threads 2] [--call-mb 1.6,17,512] [--dist 4096]
//   mmsharp-bench gemv-stream [--k 896] [--threads 1,2]
//   mmsharp-bench decode-gemv [--threads 1,2] [--reps 9] [--items 0,4] [--kinds 1] [--pattern gate_up,qkv+o+gate_up+down]
//   mmsharp-bench decode-profile [--threads 1,2] [--prompt 256] [--steps 64] [--layers 24] [--attention decode,tiled] [--fused on,off] [--team off,on]
//   mmsharp-bench train-layer [--seq 512] [--threads 2] [--steps 10] [--warmup 3] [--recompute 0|1] [--profile 0|1]
//     (PyTorch reference: /usr/bin/python3 bench/reference/torch_train_layer.py [--seq 512] [--threads 2] [--steps 10])
// --clock cpu times single-threaded cases with the thread's CPU clock (tuning on a busy machine).
// Comparisons are ratios measured side by side in one run (ours and OpenBLAS alternate per repetition).
var opts = Options.Parse(args.Skip(1).ToArray());
switch (args.FirstOrDefault())
{
    case "gemm": GemmBench.Run(opts); break;
    case "bandwidth": BandwidthBench.Run(opts); break;
    case "attention": AttentionBench.Run(opts); break;
    case "generate": GenerateBench.Run(opts); break;
    case "decode-profile": DecodeProfile.Run(opts); break;
    case "gemv-stream": GemvStreamBench.Run(opts); break;
    case "decode-gemv": DecodeGemvBench.Run(opts); break;
    case "train-layer": TrainLayerBench.Run(opts); break;
    case "gemv-pages": GemvPagesBench.Run(opts); break;
    case "decode-ab": DecodeAbBench.Run(opts); break;
    case "gemv-rows": GemvRowsBench.Run(opts); break;
    case "decode-attention": DecodeAttentionBench.Run(opts); break;
    case "gemv-shape": GemvShapeBench.Run(opts); break;
    default:
        Console.Error.WriteLine("usage: mmsharp-bench gemm|bandwidth|attention|generate|decode-profile|decode-gemv|gemv-stream|gemv-pages|gemv-rows|gemv-shape|decode-ab|decode-attention|train-layer [--dtype fp32|bf16w] [--m M] [--k K] [--n N] [--threads T]");
        Environment.Exit(2);
        break;
}
