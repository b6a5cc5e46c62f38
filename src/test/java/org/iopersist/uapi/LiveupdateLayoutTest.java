package org.iopersist.uapi;

import static java.lang.foreign.MemoryLayout.PathElement.groupElement;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.lang.foreign.MemoryLayout;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.StructLayout;
import java.lang.reflect.Field;
import java.nio.charset.StandardCharsets;
import java.util.HashSet;
import java.util.List;
import java.util.Locale;
import java.util.Set;
import org.junit.jupiter.api.Test;

/**
 * The LUO uAPI byte for byte as {@code include/uapi/linux/liveupdate.h}: the ioctl numbers as
 * {@code _IO(0xBA, nr)}, each struct's {@code sizeof}, its minimum size (the whole struct, as the
 * dispatch tables' {@code offsetofend} of the last member) and every offset constant.
 */
class LiveupdateLayoutTest {
    private record Linux(Class<?> type, long size) {
    }

    private static final List<Linux> STRUCTS = List.of(
            new Linux(LiveupdateIoctlSession.class, 72),
            new Linux(LiveupdateSessionFd.class, 16),
            new Linux(LiveupdateSessionFinish.class, 8),
            new Linux(LiveupdateSessionGetName.class, 72));

    @Test
    void ioctlNumbersAreIo0xBaNr() {
        assertEquals(0xBA00, Liveupdate.LIVEUPDATE_IOCTL_CREATE_SESSION);
        assertEquals(0xBA01, Liveupdate.LIVEUPDATE_IOCTL_RETRIEVE_SESSION);
        assertEquals(0xBA40, Liveupdate.LIVEUPDATE_SESSION_PRESERVE_FD);
        assertEquals(0xBA41, Liveupdate.LIVEUPDATE_SESSION_RETRIEVE_FD);
        assertEquals(0xBA42, Liveupdate.LIVEUPDATE_SESSION_FINISH);
        assertEquals(0xBA43, Liveupdate.LIVEUPDATE_SESSION_GET_NAME);
    }

    @Test
    void sizesAndOffsetsAreLinuxs() throws Exception {
        for (Linux l : STRUCTS) {
            final String name = l.type().getSimpleName();
            final StructLayout layout = (StructLayout) l.type().getField("LAYOUT").get(null);
            assertEquals(l.size(), layout.byteSize(), name + " layout");
            assertEquals(l.size(), l.type().getField("SIZE").getLong(null), name + ".SIZE");
            // Every LUO command's table entry ends at the struct's last member.
            assertEquals(l.size(), l.type().getField("MIN_SIZE").getLong(null), name + ".MIN_SIZE");
            final Set<String> covered = new HashSet<>();
            for (Field f : l.type().getFields()) {
                if (f.getName().endsWith("_OFFSET")) {
                    final String member = f.getName().substring(0, f.getName().length() - "_OFFSET".length())
                            .toLowerCase(Locale.ROOT);
                    assertEquals(layout.byteOffset(groupElement(member)), f.getLong(null), name + "." + f.getName());
                    covered.add(member);
                }
            }
            for (MemoryLayout m : layout.memberLayouts()) {
                assertTrue(covered.contains(m.name().orElseThrow()), name + " has no offset constant for " + m.name());
            }
        }
        assertEquals(8, LiveupdateSessionFd.TOKEN_OFFSET, "the token is an __aligned_u64");
    }

    @Test
    void namesAreNulPaddedSixtyFourByteFields() {
        final MemorySegment s = MemorySegment.ofArray(new byte[72]);
        s.fill((byte) 0x55);
        LiveupdateIoctlSession.name(s, "vm0");
        final byte[] want = new byte[64];
        want[0] = 'v';
        want[1] = 'm';
        want[2] = '0';
        assertArrayEquals(want, LiveupdateIoctlSession.nameBytes(s));
        assertEquals(0x55555555, LiveupdateIoctlSession.fd(s), "the name leaves fd alone");

        final MemorySegment g = MemorySegment.ofArray(new byte[72]);
        LiveupdateSessionGetName.name(g, "x".repeat(80).getBytes(StandardCharsets.UTF_8));
        assertEquals("x".repeat(63), LiveupdateSessionGetName.name(g), "the kernel's answer keeps its NUL");
    }
}
