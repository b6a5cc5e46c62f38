package org.iopersist.kernel.init;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import org.junit.jupiter.api.Test;

/** The command line as uapi.md's table gives it: a bad value is reported and its default kept, never half-applied. */
class BootParamsTest {
    @Test
    void knownParametersParse() {
        final BootParams p = BootParams.parse("guestmemfs=256M kho_scratch=32M liveupdate.finish_timeout=0 page_poison=on iommufd.selftest=1");
        assertEquals(256L << 20, p.guestmemfsSize());
        assertEquals(32L << 20, p.khoScratchSize());
        assertEquals(0, p.finishTimeoutSec());
        assertTrue(p.pagePoison());
        assertTrue(p.iommufdSelftest());
        assertEquals(List.of(), p.malformed());
    }

    @Test
    void aBadValueKeepsTheDefault() {
        final BootParams p = BootParams.parse("kho_scratch=0 liveupdate.finish_timeout=-5 quiet");
        assertEquals(BootParams.DEFAULT_KHO_SCRATCH, p.khoScratchSize(), "kho_scratch=0 is refused, not applied");
        assertEquals(BootParams.DEFAULT_FINISH_TIMEOUT, p.finishTimeoutSec());
        assertEquals(2, p.malformed().size(), p.malformed().toString());
        assertEquals(List.of("quiet"), p.unknown());
        assertEquals(BootParams.DEFAULT_KHO_SCRATCH, BootParams.parse("kho_scratch=4097").khoScratchSize());
    }
}
