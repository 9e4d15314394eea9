using System.Runtime.InteropServices;
using System.Text;

namespace MMSharp.Engine.IO;

/// <summary>Small crash-safe file operations: write to a temporary name, fsync, rename, fsync the directory.</summary>
public static partial class DurableFile
{
    /// <summary>Writes <paramref name="text"/> (UTF-8) to <paramref name="path"/> atomically and durably.</summary>
    public static void WriteAllText(string path, string text) => Write(path, fs => fs.Write(Encoding.UTF8.GetBytes(text)));

    /// <summary>Writes through <paramref name="write"/> into a temporary file beside <paramref name="path"/>, fsyncs it,
    /// renames it over <paramref name="path"/> (atomic on POSIX file systems) and fsyncs the directory; on failure the
    /// temporary file is removed and <paramref name="path"/> is untouched.</summary>
    public static void Write(string path, Action<FileStream> write)
    {
        string full = Path.GetFullPath(path);
        string dir = Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(dir);
        string tmp = Path.Combine(dir, $".{Path.GetFileName(full)}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var fs = new FileStream(tmp, FileMode.CreateNew, FileAccess.Write, FileShare.None, bufferSize: 1 << 20))
            {
                write(fs);
                fs.Flush(flushToDisk: true);
            }
            File.Move(tmp, full, overwrite: true);
            SyncDirectory(dir);
        }
        catch
        {
            try { File.Delete(tmp); } catch (IOException) { }
            throw;
        }
    }

    /// <summary>fsync of a directory makes renames and creations inside it durable (POSIX; best effort elsewhere).</summary>
    public static void SyncDirectory(string dir)
    {
        if (!OperatingSystem.IsLinux() && !OperatingSystem.IsMacOS()) return;
        try
        {
            int fd = open(dir, 0 /* O_RDONLY */);
            if (fd < 0) return;
            fsync(fd);
            close(fd);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
        }
    }

    [LibraryImport("libc", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int open(string path, int flags);
    [LibraryImport("libc")]
    private static partial int fsync(int fd);
    [LibraryImport("libc")]
    private static partial int close(int fd);
}
