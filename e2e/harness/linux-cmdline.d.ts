/** The Linux guest's kernel command line (linux-cmdline.js). */
export declare const LINUX_CMDLINE: string;
