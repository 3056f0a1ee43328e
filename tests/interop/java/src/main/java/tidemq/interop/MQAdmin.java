package tidemq.interop;

import org.apache.rocketmq.tools.command.MQAdminStartup;

/**
 * mqadmin, i.e. Apache's {@code MQAdminStartup.main0(args, null)}, followed by an immediate exit.
 *
 * <p>Plain {@code MQAdminStartup} leaves the JVM waiting about 3 s for Netty's non-daemon threads to wind down after
 * the command is done (and its admin client's shutdown sometimes 3 s more); this wrapper runs exactly the same command
 * code and exits as soon as it returns. Like MQAdminStartup it exits 0 even when the command failed (it prints
 * "... command failed"): callers read the output. The arguments are mqadmin's; the caller bounds the run time.
 */
public final class MQAdmin {
    private MQAdmin() {
    }

    public static void main(final String[] args) throws InterruptedException {
        final int[] code = {0};
        Thread worker = new Thread(() -> {
            try {
                MQAdminStartup.main0(args, null);
            } catch (Throwable t) {
                t.printStackTrace();
                code[0] = 1;
            }
        }, "mqadmin");
        worker.start();
        while (worker.isAlive()) {
            worker.join(100);
            // the command's own DefaultMQAdminExt.shutdown() has the same 3 s stall as the clients' (see Driver)
            Driver.nudgeRemotingShutdown(worker);
        }
        System.out.flush();
        System.err.flush();
        Runtime.getRuntime().halt(code[0]);
    }
}
