namespace MMSharp.Engine;

/// <summary>Storage element types. All arithmetic is done in fp32; other types are storage formats.</summary>
public enum DType : byte
{
    F32,
    /// <summary>bfloat16 kept as raw 16-bit words (upper half of an fp32).</summary>
    BF16,
    F16,
    I64,
    I32,
    U8,
    Bool,
}

public static class DTypeInfo
{
    public static int SizeOf(this DType t) => t switch
    {
        DType.F32 => 4,
        DType.BF16 => 2,
        DType.F16 => 2,
        DType.I64 => 8,
        DType.I32 => 4,
        DType.U8 => 1,
        DType.Bool => 1,
        _ => throw new ArgumentOutOfRangeException(nameof(t)),
    };

    public static bool IsFloat(this DType t) => t is DType.F32 or DType.BF16 or DType.F16;

    /// <summary>The dtype name used in safetensors headers.</summary>
    public static string SafetensorsName(this DType t) => t switch
    {
        DType.F32 => "F32",
        DType.BF16 => "BF16",
        DType.F16 => "F16",
        DType.I64 => "I64",
        DType.I32 => "I32",
        DType.U8 => "U8",
        DType.Bool => "BOOL",
        _ => throw new ArgumentOutOfRangeException(nameof(t)),
    };

    public static bool TryParseSafetensors(string name, out DType t)
    {
        switch (name)
        {
            case "F32": t = DType.F32; return true;
            case "BF16": t = DType.BF16; return true;
            case "F16": t = DType.F16; return true;
            case "I64": t = DType.I64; return true;
            case "I32": t = DType.I32; return true;
            case "U8": t = DType.U8; return true;
            case "BOOL": t = DType.Bool; return true;
            default: t = default; return false;
        }
    }
}
